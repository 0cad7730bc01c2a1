"""The dashboard at `/` in a real browser: Debian's chromium, headless, driven by Playwright for Python,
against a live `wharf serve` with seeded data and tokens.

Each page must load without console errors; the actions an operator takes at 3 a.m. must change the
server's state (checked over JSON-RPC, not only on the page); a reader sees no action buttons and is
refused by the server anyway; user data is inert text. Screenshots of every page go to
`$WHARF_TEST_ARTIFACTS/dashboard` (default: a folder under /tmp), not into the repository.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from wharf.testing import WharfServer

ADMIN = "admin-secret-9f2c"
READER = "reader-secret-41d7"
XSS = "<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script>"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("WHARF_TEST_ARTIFACTS") or tempfile.gettempdir()) / "dashboard"


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def server():
    tokens = tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False)
    tokens.write(f"admin:{ADMIN}\nreader:{READER}\n")
    tokens.close()
    s = WharfServer(
        extra_args=["--token-file", tokens.name, "--allow-private-webhooks", "--webhook-retry-schedule", "0,300ms,300ms"]
    )
    yield s
    s.stop()
    os.unlink(tokens.name)


@pytest.fixture(scope="module")
def seeded(server) -> Dict[str, Any]:
    c = server.client(token=ADMIN)
    xss = c.call("jobs.enqueue", {"queue": "mail", "kind": "send", "payload": {"html": XSS}, "tags": ["xss"]})
    for i in range(3):
        c.call("jobs.enqueue", {"queue": "mail", "kind": "send", "payload": {"n": i}})
    keyed = c.call("jobs.enqueue", {"queue": "mail", "kind": "invoice", "payload": {}, "uniqueKey": "invoice:42"})
    doomed = c.call("jobs.enqueue", {"queue": "billing", "kind": "charge", "payload": {"amount": 5}, "maxAttempts": 1})
    leased = c.call("jobs.lease", {"queues": ["billing"], "max": 1, "leaseMs": 30000, "worker": "w-1"})["jobs"][0]
    assert leased["id"] == doomed["id"]
    c.call("jobs.fail", {"id": leased["id"], "leaseToken": leased["leaseToken"], "error": {"message": "card declined"}})
    assert c.call("jobs.get", {"id": doomed["id"]})["state"] == "dead"
    c.call("cron.upsert", {"name": "nightly", "expression": "0 3 * * *", "timezone": "Europe/Berlin",
                           "target": {"job": {"queue": "reports", "kind": "nightly"}}})
    c.call("locks.acquire", {"name": "db-migrate", "holder": "deploy-42", "ttlMs": 600000})
    endpoint = c.call("webhooks.register", {"url": f"http://127.0.0.1:{closed_port()}/hook"})
    c.call("webhooks.send", {"endpointId": endpoint["id"], "event": "order.paid", "payload": {"order": 1}})
    seeded = {"client": c, "xss": xss["id"], "dead": doomed["id"], "endpoint": endpoint["id"], "keyed": keyed["id"]}
    yield seeded
    c.close()


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "the browser tests need Debian's chromium (scripts/test.sh installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


class Tab:
    """A signed-in page that records console errors, page errors and dialogs."""

    def __init__(self, browser: Browser, server: WharfServer, token: str, **context: Any) -> None:
        self.server = server
        self.context = browser.new_context(**context)
        self.page: Page = self.context.new_page()
        self.errors: List[str] = []
        self.dialogs: List[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(server.http_url + "/")
        self.page.fill("#token", token)
        self.page.click("button[type=submit]")
        expect(self.page.locator("#who")).to_contain_text("replica")

    def open(self, hash_: str, heading: str) -> Page:
        """Goes to `#hash_` and waits until the page has rendered it: going from one hash to another does
        not reload the page, so the old page (with the same heading, perhaps) stays until the new one is
        rendered, and filling its form would be lost."""
        self.page.goto(f"{self.server.http_url}/#{hash_}")
        expect(self.page.locator(f'main[data-shows="#{hash_}"]:not([aria-busy])')).to_have_count(1)
        expect(self.page.locator("main h1")).to_contain_text(heading)
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture()
def admin(browser, server, seeded):
    t = Tab(browser, server, ADMIN)
    yield t
    t.close()


def test_every_page_loads_without_console_errors(admin: Tab, seeded) -> None:
    pages = [
        ("/", "Overview", "overview"),
        ("/jobs", "Jobs", "jobs"),
        (f"/jobs/{seeded['dead']}", f"Job {seeded['dead']}", "job"),
        ("/schedules", "Schedules", "schedules"),
        ("/schedules/nightly", "Schedule nightly", "schedule"),
        ("/schedules/new", "New schedule", "schedule-new"),
        ("/locks", "Locks", "locks"),
        ("/webhooks", "Webhooks", "webhooks"),
        (f"/webhooks/{seeded['endpoint']}", f"Endpoint {seeded['endpoint']}", "endpoint"),
    ]
    for hash_, heading, name in pages:
        page = admin.open(hash_, heading)
        assert page.locator("main .error:not(:empty)").count() == 0, (hash_, page.locator("main").inner_text())
        admin.shot(name)
    assert admin.errors == []
    # What the seeded data should show somewhere.
    page = admin.open("/", "Overview")
    expect(page.locator("[data-testid=alerts]")).to_contain_text("1 dead job(s) in billing")
    expect(page.locator("main table").last).to_contain_text("mail")
    # This replica, alive, in the replicas table.
    expect(page.locator("main table").first).to_contain_text("this page's")
    expect(page.locator("main table").first.locator(".badge.ok")).to_have_text("alive")
    # The billing queue's last hour: one job died this minute (queues.stats lastHour).
    expect(page.locator("tr", has_text="billing").locator("svg.spark")).to_have_attribute(
        "aria-label", "0 completed, 1 dead in the last hour")
    page = admin.open("/locks", "Locks")
    expect(page.locator("main table")).to_contain_text("deploy-42")
    page = admin.open("/schedules/nightly", "Schedule nightly")
    expect(page.locator("main")).to_contain_text("At 03:00 (Europe/Berlin)")
    # A job's detail shows its attempts with the error.
    page = admin.open(f"/jobs/{seeded['dead']}", f"Job {seeded['dead']}")
    expect(page.locator("main")).to_contain_text("card declined")


def test_retrying_a_dead_job_makes_it_available(admin: Tab, seeded) -> None:
    page = admin.open(f"/jobs/{seeded['dead']}", f"Job {seeded['dead']}")
    page.click("button[data-action='jobs.retry']")
    expect(page.locator("dialog#confirm")).to_be_visible()
    page.click("#confirm-ok")
    expect(page.locator("main h1 .badge")).to_have_text("available")
    assert seeded["client"].call("jobs.get", {"id": seeded["dead"]})["state"] == "available"
    assert admin.errors == []


def test_pausing_a_schedule_shows_it_paused(admin: Tab, seeded) -> None:
    page = admin.open("/schedules", "Schedules")
    row = page.locator("tr", has_text="nightly")
    row.locator("button[data-action='cron.pause']").click()
    page.fill("#confirm-note", "maintenance window")
    page.click("#confirm-ok")
    expect(row.locator(".badge")).to_have_text("paused")
    expect(row).to_contain_text("maintenance window")
    got = seeded["client"].call("cron.get", {"name": "nightly"})
    assert got["paused"] is True and got["pausedNote"] == "maintenance window"
    # And back.
    row.locator("button[data-action='cron.resume']").click()
    expect(row.locator(".badge")).to_have_text("active")
    assert seeded["client"].call("cron.get", {"name": "nightly"})["paused"] is False


def test_a_failing_endpoint_turns_red(admin: Tab, seeded) -> None:
    page = admin.open("/webhooks", "Webhooks")
    row = page.locator("tr", has_text=f"/hook")
    # Three attempts 300 ms apart all fail to connect; the page follows without a reload.
    expect(row.locator(".badge.bad")).to_be_visible(timeout=15000)
    page = admin.open(f"/webhooks/{seeded['endpoint']}", f"Endpoint {seeded['endpoint']}")
    expect(page.locator("main table").first).to_contain_text("order.paid")
    page.click("main details summary")
    expect(page.locator("main details table")).to_contain_text("connect")
    admin.shot("endpoint-failing")
    assert admin.errors == []


def test_a_reader_sees_no_buttons_and_the_server_refuses_it(browser, server, seeded) -> None:
    t = Tab(browser, server, READER)
    try:
        for hash_, heading in [("/", "Overview"), ("/jobs", "Jobs"), (f"/jobs/{seeded['xss']}", "Job"),
                               ("/schedules", "Schedules"), ("/schedules/nightly", "Schedule"), ("/locks", "Locks"),
                               ("/webhooks", "Webhooks"), (f"/webhooks/{seeded['endpoint']}", "Endpoint")]:
            page = t.open(hash_, heading)
            expect(page.locator("main table, main dl").first).to_be_visible()
            assert page.locator("[data-action]").count() == 0, hash_
        expect(t.page.locator("#who")).to_contain_text("reader")
        t.shot("reader-jobs")
        # The page hides the buttons; the server is what refuses.
        refused = t.page.evaluate(
            """async (id) => {
                const r = await fetch('/rpc', {method: 'POST', headers: {Authorization: 'Bearer ' + sessionStorage.getItem('wharf.token')},
                  body: JSON.stringify({jsonrpc: '2.0', id: 1, method: 'jobs.cancel', params: {id}})});
                return (await r.json()).error;
            }""",
            seeded["xss"],
        )
        assert refused["code"] == -32002, refused
        assert t.errors == []
    finally:
        t.close()


def test_user_data_renders_as_text(admin: Tab, seeded) -> None:
    page = admin.open(f"/jobs/{seeded['xss']}", f"Job {seeded['xss']}")
    expect(page.locator("main pre").first).to_contain_text("<img src=x onerror=window.__pwned=1>")
    assert page.locator("main img").count() == 0
    assert page.locator("main script").count() == 0
    page = admin.open("/jobs?tag=xss", "Jobs")
    expect(page.locator("main table")).to_contain_text(seeded["xss"])
    assert page.evaluate("window.__pwned") is None
    assert admin.dialogs == [] and admin.errors == []


def test_the_token_stays_in_session_storage(browser, server, seeded) -> None:
    t = Tab(browser, server, ADMIN)
    try:
        assert t.context.cookies() == []
        assert ADMIN not in t.page.url
        assert t.page.evaluate("sessionStorage.getItem('wharf.token')") == ADMIN
        assert t.page.evaluate("localStorage.length") == 0
        # Signing out forgets it and asks again.
        t.page.click("#signout")
        expect(t.page.locator("#token")).to_be_visible()
        assert t.page.evaluate("sessionStorage.getItem('wharf.token')") is None
        # A wrong token is refused with a message, not signed in.
        t.page.fill("#token", "not-a-token")
        t.page.click("button[type=submit]")
        expect(t.page.locator("main [role=alert]")).to_contain_text("refused")
    finally:
        t.close()


def test_headers_keep_the_page_in_its_box(server) -> None:
    for path in ["/", "/ui/app.js", "/ui/style.css"]:
        with urllib.request.urlopen(server.http_url + path) as r:
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    with urllib.request.urlopen(server.http_url + "/") as r:
        html = r.read().decode()
    assert "<script>" not in html and " style=" not in html and "http://" not in html and "https://" not in html


def test_phone_width_and_dark_mode(browser, server, seeded) -> None:
    t = Tab(browser, server, ADMIN, viewport={"width": 375, "height": 740}, color_scheme="dark")
    try:
        for hash_, heading, name in [("/", "Overview", "phone-overview"), ("/jobs", "Jobs", "phone-jobs"),
                                     ("/webhooks", "Webhooks", "phone-webhooks")]:
            page = t.open(hash_, heading)
            # Wide tables scroll in their own box; the page itself does not scroll sideways.
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, hash_
            t.shot(name)
        bg = t.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(13, 17, 23)", bg
        # Keyboard: from a fresh load the first Tab reaches the skip link, then the navigation.
        t.page.reload()
        expect(t.page.locator("main h1")).to_contain_text("Webhooks")
        t.page.keyboard.press("Tab")
        assert t.page.evaluate("document.activeElement.className") == "skip"
        t.page.keyboard.press("Tab")
        t.page.keyboard.press("Tab")
        assert t.page.evaluate("document.activeElement.textContent") == "Overview"
        t.page.keyboard.press("Enter")
        expect(t.page.locator("main h1")).to_contain_text("Overview")
        assert t.errors == []
    finally:
        t.close()


def test_counts_update_without_reload(admin: Tab, seeded) -> None:
    page = admin.open("/", "Overview")
    row = page.locator("main table tr", has_text="audit")
    expect(row).to_have_count(0)
    seeded["client"].call("jobs.enqueue", {"queue": "audit", "kind": "log", "payload": {}})
    # No navigation: the overview refreshes itself (events when served, else polling every 5 s).
    expect(row).to_have_count(1, timeout=12000)
    assert admin.errors == []


def test_jobs_are_found_by_unique_key_and_filtered_by_creation_time(admin: Tab, seeded) -> None:
    page = admin.open("/jobs", "Jobs")
    page.fill("input[name=uniqueKey]", "invoice:42")
    page.click("form:has(input[name=uniqueKey]) button[type=submit]")
    rows = page.locator("main table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(seeded["keyed"])
    # Created before the year 2000: nothing; created from then on: the seeded jobs.
    page = admin.open("/jobs", "Jobs")
    page.fill("input[name=before]", "2000-01-01T00:00")
    page.click("form[role=search] button[type=submit]")
    expect(page.locator("main")).to_contain_text("No jobs match.")
    page = admin.open("/jobs?from=2000-01-01T00:00&queue=mail", "Jobs")
    expect(page.locator("main table")).to_contain_text(seeded["keyed"])
    assert admin.errors == []
