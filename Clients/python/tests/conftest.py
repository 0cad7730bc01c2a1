"""Fixtures: one real `wharf serve` for the whole session (on a fresh database), and clients of it.

The server comes from WHARF_BIN and the database from WHARF_TEST_DATABASE_URL; without them the
tests that need a server fail and say to run `bash scripts/test.sh`.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, List

import pytest

import wharf
from wharf.pytest_plugin import start_server
from wharf.testing import WharfServer

_names = itertools.count(1)


@pytest.fixture(scope="session")
def server() -> Iterator[WharfServer]:
    """The session's server; tests keep apart by using their own queue and lock names (`unique`)."""
    s = start_server()
    yield s
    s.stop()


@pytest.fixture
def client(server: WharfServer) -> Iterator[wharf.Client]:
    """A client of the session's server, closed after the test."""
    c = wharf.Client(server.host, server.port, timeout=10)
    yield c
    c.close()


@pytest.fixture
def make_worker(server: WharfServer) -> Iterator[Callable[..., wharf.Worker]]:
    """`make_worker(queues, **kwargs)`: a `wharf.Worker` of the session's server (long polls of 500 ms),
    stopped without waiting for its jobs after the test."""
    started = []

    def make(queues: List[str], **kwargs: Any) -> wharf.Worker:
        kwargs.setdefault("port", server.port)
        kwargs.setdefault("poll_ms", 500)
        w = wharf.Worker(queues=queues, **kwargs)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop(wait_for_jobs=False)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name no other test uses (for queues, locks, keys)."""
    return f"{request.node.name.replace('[', '-').rstrip(']')}-{next(_names)}"
