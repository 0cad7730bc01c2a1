"""Standard Webhooks signatures: verify deliveries in a receiver (and sign, for tests)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Mapping, Optional, Union


class WebhookVerificationError(Exception):
    pass


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_"):]
    return base64.b64decode(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: Union[bytes, str]) -> str:
    """The `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` signature."""
    payload = body.encode() if isinstance(body, str) else body
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: Mapping[str, str], body: Union[bytes, str], tolerance: int = 300,
           now: Optional[float] = None) -> None:
    """Raises `WebhookVerificationError` unless one of the signatures matches and the timestamp is
    within `tolerance` seconds. Header names are case-insensitive."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts)
    except ValueError as e:
        raise WebhookVerificationError("invalid webhook-timestamp") from e
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("timestamp outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in sigs.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise WebhookVerificationError("no matching signature")
