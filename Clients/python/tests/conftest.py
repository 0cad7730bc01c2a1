"""Fixtures for the client tests: a real server per module."""

from wharf.pytest_plugin import client, server  # noqa: F401
