"""Fault tests of issue 15 (a package, so its conftest does not shadow tests/conftest.py)."""
