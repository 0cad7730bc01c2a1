"""Fixtures for the conformance tests: a real server per module."""

from wharf.pytest_plugin import server  # noqa: F401
