import base64
import os
import time

import pytest

from wharf import webhooks

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def headers(body, msg_id="msg_1", ts=None, secret=SECRET):
    ts = int(time.time()) if ts is None else ts
    signature = webhooks.sign(secret, msg_id, ts, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_verify_accepts_and_rejects():
    body = b'{"type":"ping"}'
    webhooks.verify(SECRET, headers(body), body)
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(SECRET, headers(body), body + b" ")
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(SECRET, headers(body, ts=int(time.time()) - 3600), body)
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    h = headers(body)
    rotated = webhooks.sign(other, "msg_1", int(h["webhook-timestamp"]), body)
    h["webhook-signature"] = rotated + " " + h["webhook-signature"]
    webhooks.verify(SECRET, h, body)  # one of several signatures matches (secret rotation)


def test_matches_the_standardwebhooks_package():
    try:
        import standardwebhooks
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("standardwebhooks is not installed")
    body = '{"type":"invoice.paid","id":42}'
    wh = standardwebhooks.Webhook(SECRET)
    ts = int(time.time())
    import datetime

    theirs = wh.sign("msg_2", datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc), body)
    assert theirs == webhooks.sign(SECRET, "msg_2", ts, body)
    wh.verify(body, headers(body, msg_id="msg_3", ts=ts))
    webhooks.verify(SECRET, {"webhook-id": "msg_2", "webhook-timestamp": str(ts), "webhook-signature": theirs}, body)
