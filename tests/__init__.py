"""The tests, a package: they import what they share as tests.helpers and tests.contract."""
