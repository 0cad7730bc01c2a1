"""Standard Webhooks signatures (https://www.standardwebhooks.com): verify deliveries, sign for tests.

A delivery carries three headers: `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
(several during a secret rotation). The secret is `whsec_<base64 key>`.

    from wharf import webhooks

    def receive(request):
        webhooks.verify(secret, request.headers, request.body)   # raises WebhookVerificationError
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import math
import os
import time
import uuid
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300
"""Seconds a timestamp may be off (in either direction) before a delivery is refused as a replay."""

Secret = Union[str, bytes]
Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]]]
Body = Union[bytes, bytearray, memoryview, str]
Timestamp = Union[int, float, datetime.datetime]


class WebhookVerificationError(Exception):
    """The delivery is not authentic: a header is missing or malformed, the timestamp is outside the
    tolerance, or no signature matches."""


def _b64decode(text: str) -> bytes:
    # Tolerates missing padding, like the reference libraries.
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def secret_key(secret: Secret) -> bytes:
    """The HMAC key of a `whsec_...` secret (or raw key bytes, returned as they are)."""
    if isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        text = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
        try:
            key = _b64decode(text)
        except (binascii.Error, ValueError) as e:
            raise ValueError("a webhook secret is whsec_ followed by base64") from e
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def generate_secret(nbytes: int = 32) -> str:
    """A new random secret, `whsec_<base64 of nbytes random bytes>`."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(nbytes)).decode()


def _body_bytes(body: Body) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def _unix(timestamp: Timestamp) -> int:
    if isinstance(timestamp, datetime.datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=datetime.timezone.utc)
        return math.floor(timestamp.timestamp())
    return math.floor(timestamp)


def sign(secret: Secret, msg_id: str, timestamp: Timestamp, body: Body) -> str:
    """The signature `v1,<base64 HMAC-SHA256 of "msg_id.timestamp.body">`."""
    signed = f"{msg_id}.{_unix(timestamp)}.".encode() + _body_bytes(body)
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign_headers(
    secret: Union[Secret, Sequence[Secret]],
    body: Body,
    msg_id: Optional[str] = None,
    timestamp: Optional[Timestamp] = None,
) -> Dict[str, str]:
    """The three headers of a delivery of `body` (signed with each secret given, as during a rotation)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = _unix(time.time() if timestamp is None else timestamp)
    secrets = [secret] if isinstance(secret, (str, bytes, bytearray)) else list(secret)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sign(s, msg_id, ts, body) for s in secrets),
    }


def _header_map(headers: Headers) -> Dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k).lower(): str(v) for k, v in items}


def verify(
    secret: Union[Secret, Sequence[Secret]],
    headers: Headers,
    body: Body,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: Optional[float] = None,
) -> None:
    """Checks that `body` was signed with `secret` and is recent; raises `WebhookVerificationError` if not.

    `headers` is any mapping (names are matched case-insensitively) or a list of pairs; `body` is the
    raw request body exactly as received. `secret` may be a list of secrets (old and new, while
    rotating); one match is enough. `tolerance` is in seconds, for timestamps in the past and the
    future alike.
    """
    h = _header_map(headers)
    msg_id, ts, signatures = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts.strip())
    except ValueError as e:
        raise WebhookVerificationError("webhook-timestamp is not a Unix time in seconds") from e
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("webhook-timestamp is in the future")
    secrets = [secret] if isinstance(secret, (str, bytes, bytearray)) else list(secret)
    signed = f"{msg_id}.{timestamp}.".encode() + _body_bytes(body)
    expected = [hmac.new(secret_key(s), signed, hashlib.sha256).digest() for s in secrets]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = _b64decode(value)
        except (binascii.Error, ValueError):
            continue
        if any(hmac.compare_digest(given, e) for e in expected):
            return
    raise WebhookVerificationError("no signature matches")


def verify_json(
    secret: Union[Secret, Sequence[Secret]], headers: Headers, body: Body, tolerance: float = DEFAULT_TOLERANCE
) -> Any:
    """`verify`, then the body parsed as JSON."""
    import json

    verify(secret, headers, body, tolerance)
    return json.loads(_body_bytes(body))


__all__ = [
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
    "WebhookVerificationError",
    "generate_secret",
    "secret_key",
    "sign",
    "sign_headers",
    "verify",
    "verify_json",
]
