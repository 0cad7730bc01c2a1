"""pytest fixtures: `server` (a real `wharf serve` on a fresh database, per module) and `client`.

Import them into a conftest: `from wharf.pytest_plugin import client, server  # noqa: F401`.
"""

from __future__ import annotations

import pytest

from .client import Client
from .testing import MissingEnvironment, WharfServer


@pytest.fixture(scope="module")
def server():
    try:
        s = WharfServer()
    except MissingEnvironment as e:
        pytest.fail(str(e))
    yield s
    s.stop()


@pytest.fixture
def client(server):
    c = Client("127.0.0.1", server.port)
    yield c
    c.close()
