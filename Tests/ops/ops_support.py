"""Helpers shared by Tests/ops: a certificate made at test time, and an environment without settings."""

from __future__ import annotations

import os
import subprocess
from typing import Dict, Optional


def self_signed(folder) -> Dict[str, str]:
    """A self-signed certificate for 127.0.0.1 (`cert`, `key`: PEM paths), made with the openssl command."""
    cert, key = str(folder / "tls.crt"), str(folder / "tls.key")
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {"cert": cert, "key": key}


def without_settings(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment without any WHARF_* variable (WHARF_BIN aside), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_") or k == "WHARF_BIN"}
    env.update(extra or {})
    return env
