"""pytest fixtures: `server` (a real `wharf serve` on a fresh database, one per test module) and `client`.

Import them into a conftest: `from wharf.pytest_plugin import client, server  # noqa: F401`.
They fail (not skip) when WHARF_BIN or WHARF_TEST_DATABASE_URL is missing.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .client import Client
from .testing import MissingEnvironment, WharfServer


def start_server(**kwargs: object) -> WharfServer:
    """A `WharfServer`, or a test failure saying how to provide the environment."""
    try:
        return WharfServer(**kwargs)  # type: ignore[arg-type]
    except MissingEnvironment as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def server() -> Iterator[WharfServer]:
    """A fresh server for the test module."""
    s = start_server()
    yield s
    s.stop()


@pytest.fixture
def client(server: WharfServer) -> Iterator[Client]:
    """A client of `server`, closed after the test."""
    c = Client(server.host, server.port)
    yield c
    c.close()
