"""The harness itself: a bystander on an idle server is answered quickly, and RSS is readable."""

from hostile import Bystander, rss_bytes
from wharf.testing import WharfServer


def test_bystander_on_an_idle_server():
    with WharfServer() as server:
        with Bystander(server.host, server.port) as b:
            import time
            time.sleep(0.5)
        b.assert_healthy()
        assert 1 << 20 < rss_bytes(server.proc.pid) < 1 << 30
