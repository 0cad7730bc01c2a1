#!/usr/bin/env bash
# Installs what building and running Wharf needs on Debian, skipping what is already there.
#
# Progress goes to stderr; stdout carries only shell to eval (a PATH addition for PostgreSQL's
# server binaries, which Debian keeps outside PATH):  eval "$(bash scripts/install-deps.sh)"
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in libuv1-dev libpq-dev libcurl4-openssl-dev libhttp-parser-dev postgresql pkg-config; do
  dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
done
# OpenSSL for TLS on the JSON-RPC port (WharfTLS); the openssl command makes the TLS tests' certificates.
for pkg in libssl-dev openssl; do
  dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "system packages present" >&2
fi

command -v swift >/dev/null 2>&1 || { echo "swift is not on PATH: install the Swift 6 toolchain" >&2; exit 1; }

if ! command -v initdb >/dev/null 2>&1; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$pgbin" ]; then
    echo "export PATH=\"$pgbin:\$PATH\""
  fi
fi
