"""Starts a real `wharf serve` on a fresh database for the protocol conformance tests."""

from __future__ import annotations

import pytest
from wharf.testing import MissingEnvironment, WharfServer


@pytest.fixture(scope="module")
def server():
    try:
        s = WharfServer()
    except MissingEnvironment as e:
        pytest.fail(str(e))
    yield s
    s.stop()
