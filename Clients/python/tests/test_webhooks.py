"""wharf.webhooks: Standard Webhooks signatures, checked against the reference `standardwebhooks` package."""

from __future__ import annotations

import base64
import datetime
import json
import os
import time

import pytest
from _wharf_support import in_ci

from wharf import webhooks
from wharf.webhooks import WebhookVerificationError

SECRET = webhooks.generate_secret()
BODY = b'{"type":"invoice.paid","data":{"id":42,"note":"caf\xc3\xa9"}}'


def standardwebhooks():
    try:
        import standardwebhooks as module
    except ImportError:
        if in_ci():
            pytest.fail("the standardwebhooks package is required under CI=true (pip install standardwebhooks)")
        pytest.skip("standardwebhooks is not installed (pip install standardwebhooks)")
    return module


def test_a_signed_delivery_verifies():
    headers = webhooks.sign_headers(SECRET, BODY, msg_id="msg_1")
    assert headers["webhook-id"] == "msg_1" and headers["webhook-signature"].startswith("v1,")
    webhooks.verify(SECRET, headers, BODY)
    webhooks.verify(SECRET, headers, BODY.decode())  # str bodies are UTF-8
    webhooks.verify(SECRET, {k.upper(): v for k, v in headers.items()}, BODY)  # header names: any case
    webhooks.verify(SECRET, list(headers.items()), BODY)  # or a list of pairs
    assert webhooks.verify_json(SECRET, headers, BODY)["data"]["id"] == 42


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "signature", "secret"])
def test_tampering_is_refused(tamper):
    ts = int(time.time())
    headers = webhooks.sign_headers(SECRET, BODY, msg_id="msg_1", timestamp=ts)
    body, secret = BODY, SECRET
    if tamper == "body":
        body = BODY + b" "
    elif tamper == "id":
        headers["webhook-id"] = "msg_2"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(ts + 1)
    elif tamper == "signature":
        sig = bytearray(base64.b64decode(headers["webhook-signature"][3:]))
        sig[0] ^= 1
        headers["webhook-signature"] = "v1," + base64.b64encode(bytes(sig)).decode()
    else:
        secret = webhooks.generate_secret()
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(secret, headers, body)


def test_timestamps_outside_the_tolerance_are_refused_both_ways():
    now = time.time()
    for offset in (-301, 301):
        headers = webhooks.sign_headers(SECRET, BODY, timestamp=int(now) + offset)
        with pytest.raises(WebhookVerificationError):
            webhooks.verify(SECRET, headers, BODY, now=now)
        webhooks.verify(SECRET, headers, BODY, tolerance=400, now=now)


def test_missing_or_malformed_headers_are_refused():
    headers = webhooks.sign_headers(SECRET, BODY)
    for name in headers:
        with pytest.raises(WebhookVerificationError):
            webhooks.verify(SECRET, {k: v for k, v in headers.items() if k != name}, BODY)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(SECRET, dict(headers, **{"webhook-timestamp": "yesterday"}), BODY)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(SECRET, dict(headers, **{"webhook-signature": "v1,not base64!"}), BODY)
    with pytest.raises(ValueError):
        webhooks.verify("whsec_not base64!", headers, BODY)


def test_any_of_several_signatures_matches_during_a_rotation():
    old, new = webhooks.generate_secret(), webhooks.generate_secret()
    headers = webhooks.sign_headers([new, old], BODY)  # the sender signs with both
    assert len(headers["webhook-signature"].split(" ")) == 2
    webhooks.verify(old, headers, BODY)
    webhooks.verify(new, headers, BODY)
    only_new = webhooks.sign_headers(new, BODY)
    webhooks.verify([old, new], only_new, BODY)  # the receiver accepts both while rotating
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(old, only_new, BODY)
    unknown_version = dict(headers, **{"webhook-signature": "v1a,AAAA " + headers["webhook-signature"]})
    webhooks.verify(old, unknown_version, BODY)


def test_signatures_match_the_reference_implementation():
    sw = standardwebhooks()
    ts = int(time.time())
    body = BODY.decode()
    theirs = sw.Webhook(SECRET)
    when = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    assert theirs.sign("msg_9", when, body) == webhooks.sign(SECRET, "msg_9", ts, body)
    assert webhooks.sign(SECRET, "msg_9", when, BODY) == webhooks.sign(SECRET, "msg_9", ts, body)
    # Ours verifies theirs, theirs verifies ours.
    their_headers = {
        "webhook-id": "msg_9",
        "webhook-timestamp": str(ts),
        "webhook-signature": theirs.sign("msg_9", when, body),
    }
    webhooks.verify(SECRET, their_headers, BODY)
    assert theirs.verify(body, webhooks.sign_headers(SECRET, BODY, msg_id="msg_10")) == json.loads(body)
    # Both refuse the same forgeries.
    forged = dict(their_headers, **{"webhook-id": "msg_11"})
    with pytest.raises(sw.WebhookVerificationError):
        theirs.verify(body, forged)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(SECRET, forged, BODY)
    # Unpadded secrets decode the same way.
    unpadded = "whsec_" + base64.b64encode(os.urandom(31)).decode().rstrip("=")
    assert sw.Webhook(unpadded).sign("m", when, body) == webhooks.sign(unpadded, "m", ts, body)
