"""`jobs.list` by creation time and by uniqueKey."""

from __future__ import annotations

import datetime
import time

import pytest

from wharf import InvalidParams
from wharf.testing import WharfServer


@pytest.fixture(scope="module")
def server():
    s = WharfServer()
    yield s
    s.stop()


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def test_created_from_and_before_bound_the_page(server):
    with server.client() as c:
        early = [c.jobs.enqueue("filters-time", "k", {"i": i})["id"] for i in range(3)]
        time.sleep(0.05)
        cut = time.time()
        time.sleep(0.05)
        late = [c.jobs.enqueue("filters-time", "k", {"i": i})["id"] for i in range(2)]
        ids = lambda **kw: [j["id"] for j in c.call("jobs.list", {"queue": "filters-time", **kw})["jobs"]]
        assert ids() == list(reversed(early + late))
        assert ids(createdFrom=iso(cut)) == list(reversed(late))
        assert ids(createdBefore=iso(cut)) == list(reversed(early))
        assert ids(createdFrom=iso(cut), createdBefore=iso(cut)) == []
        # Pages of one keep to the range.
        page = c.call("jobs.list", {"queue": "filters-time", "createdBefore": iso(cut), "limit": 1})
        assert [j["id"] for j in page["jobs"]] == [early[-1]]
        page = c.call("jobs.list", {"queue": "filters-time", "createdBefore": iso(cut), "limit": 1,
                                    "cursor": page["nextCursor"]})
        assert [j["id"] for j in page["jobs"]] == [early[-2]]
        with pytest.raises(InvalidParams) as e:
            c.call("jobs.list", {"createdFrom": "yesterday"})
        assert e.value.data["field"] == "createdFrom"


def test_unique_key_finds_the_unfinished_holder(server):
    with server.client() as c:
        j = c.jobs.enqueue("filters-key", "k", {}, unique_key="order:7")
        c.jobs.enqueue("filters-key", "k", {}, unique_key="order:8")
        page = c.call("jobs.list", {"uniqueKey": "order:7"})
        assert [x["id"] for x in page["jobs"]] == [j["id"]] and page["nextCursor"] is None
        assert c.call("jobs.list", {"uniqueKey": "order:nope"})["jobs"] == []
        # A finished job holds its key no more.
        c.jobs.cancel(j["id"])
        assert c.call("jobs.list", {"uniqueKey": "order:7"})["jobs"] == []
        with pytest.raises(InvalidParams) as e:
            c.call("jobs.list", {"uniqueKey": "order:8", "queue": "filters-key"})
        assert e.value.data["field"] == "uniqueKey"
