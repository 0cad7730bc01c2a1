"""`wharf serve`'s settings from flags, WHARF_* variables and `--config FILE`, and `--print-config`.

Each test runs the real binary; the servers among them answer over real TCP against a real PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Tuple

from ops_support import without_settings
from wharf import Client
from wharf.errors import WharfError
from wharf.testing import free_port, fresh_database, wharf_bin


def serve(args: List[str], env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [wharf_bin(), "serve", *args], env=without_settings(env), capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )


def print_config(args: List[str], env: Optional[Dict[str, str]] = None) -> Dict[str, Tuple[str, str]]:
    """`--print-config` as {name: (value, source)}."""
    done = serve(args + ["--print-config"], env)
    assert done.returncode == 0, done.stderr
    out: Dict[str, Tuple[str, str]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"(\S+) = (.*)  # (.*)", line)
        assert m, line
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def help_flags() -> List[str]:
    done = subprocess.run([wharf_bin(), "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return sorted(set(re.findall(r"^\s+--([a-z0-9-]+)", done.stdout, re.M)))


def test_precedence_is_flag_then_environment_then_file_then_default(tmp_path):
    config = tmp_path / "wharf.json"
    config.write_text(json.dumps({"pool-size": 7, "log-level": "notice", "job-retention": "2h", "fast-leases": True}))
    env = {"WHARF_POOL_SIZE": "5", "WHARF_LOG_LEVEL": "error"}

    c = print_config(["--config", str(config), "--pool-size", "3"], env)
    assert c["pool-size"][0] == "3" and c["pool-size"][1].startswith("flag"), c["pool-size"]
    assert c["log-level"] == ("error", "env WHARF_LOG_LEVEL")
    assert c["job-retention"][0] == "2h" and c["job-retention"][1].startswith(f"config file {config}")
    assert c["fast-leases"][0] == "true" and c["fast-leases"][1].startswith("config file")
    assert c["dead-job-retention"][0] == "168h" and c["dead-job-retention"][1].startswith("default")

    c = print_config(["--config", str(config)], env)
    assert c["pool-size"] == ("5", "env WHARF_POOL_SIZE")
    c = print_config(["--config", str(config)])
    assert c["pool-size"][0] == "7" and c["pool-size"][1].startswith("config file")
    # The file can come from WHARF_CONFIG too.
    c = print_config([], {"WHARF_CONFIG": str(config)})
    assert c["pool-size"][0] == "7" and c["config"] == (str(config), "env WHARF_CONFIG")
    c = print_config([])
    assert c["pool-size"][0] == "4" and c["pool-size"][1].startswith("default")
    # An empty variable is unset.
    c = print_config([], {"WHARF_POOL_SIZE": ""})
    assert c["pool-size"][0] == "4"


def test_every_flag_is_a_setting_with_an_environment_variable_by_one_rule():
    flags = set(help_flags()) - {"help", "print-config", "database"}  # --database: the old name of --database-url
    c = print_config([])
    assert set(c) == flags, (set(c) ^ flags)
    for name, (_, source) in c.items():
        env = "WHARF_" + name.upper().replace("-", "_")
        # Repeatable flags take the plural.
        if name in ("token", "webhook-allow-cidr", "tls-client-role"):
            env += "S"
        assert source.endswith(f"(env {env})"), (name, source)
    # And each variable does set its flag: a few of every kind.
    c = print_config([], {
        "WHARF_LISTEN": "127.0.0.2:9", "WHARF_RETRY_JITTER": "0.25", "WHARF_ALLOW_PRIVATE_WEBHOOKS": "true",
        "WHARF_WEBHOOK_ALLOW_CIDRS": "10.1.0.0/16, 10.2.0.0/16", "WHARF_CRON_MIN_PERIOD_MS": "5000",
        "WHARF_DATABASE_URL": "host=/tmp dbname=x",
    })
    assert c["listen"][0] == "127.0.0.2:9"
    assert c["retry-jitter"][0] == "0.25"
    assert c["allow-private-webhooks"][0] == "true"
    assert c["webhook-allow-cidr"][0] == "10.1.0.0/16,10.2.0.0/16"
    assert c["cron-min-period-ms"][0] == "5000"
    assert c["database-url"] == ("host=/tmp dbname=x", "env WHARF_DATABASE_URL")


def test_print_config_redacts_tokens_and_the_database_password(tmp_path):
    config = tmp_path / "wharf.json"
    config.write_text(json.dumps({"token": ["reader:file-token-secret"]}))
    for args, env in [
        (["--database-url", "postgresql://wharf:url-pass-secret@db:5432/wharf?sslmode=require"], {}),
        ([], {"WHARF_DATABASE_URL": "host=db user=wharf password=kv-pass-secret dbname=wharf",
              "WHARF_TOKENS": "admin:env-token-secret,worker:sha256:" + "ab" * 32}),
        (["--config", str(config), "--database", "host=db password='quoted pass-secret' dbname=x"], {}),
    ]:
        done = serve(args + ["--print-config"], env)
        assert done.returncode == 0, done.stderr
        assert "secret" not in done.stdout.replace("whsec", ""), done.stdout
        assert "<redacted>" in done.stdout
    c = print_config([], {"WHARF_TOKENS": "admin:env-token-secret worker:other-secret"})
    assert c["token"][0] == "admin:<redacted>,worker:<redacted>"


def test_unknown_keys_and_bad_values_are_errors_that_name_their_source(tmp_path):
    config = tmp_path / "wharf.json"
    config.write_text(json.dumps({"listen": "127.0.0.1:1", "pool-sise": 4}))
    done = serve(["--config", str(config), "--print-config"])
    assert done.returncode != 0
    assert f"config file {config}" in done.stderr and '"pool-sise"' in done.stderr, done.stderr

    config.write_text(json.dumps({"pool-size": "many"}))
    done = serve(["--config", str(config), "--print-config"])
    assert done.returncode != 0 and '"pool-size"' in done.stderr and "many" in done.stderr, done.stderr

    config.write_text(json.dumps({"fast-leases": "yes please"}))
    done = serve(["--config", str(config), "--print-config"])
    assert done.returncode != 0 and "fast-leases" in done.stderr and str(config) in done.stderr, done.stderr

    config.write_text("listen = 127.0.0.1:1\n")
    done = serve(["--config", str(config), "--print-config"])
    assert done.returncode != 0 and "not JSON" in done.stderr and str(config) in done.stderr, done.stderr

    done = serve(["--config", str(tmp_path / "absent.json"), "--print-config"])
    assert done.returncode != 0 and "absent.json" in done.stderr, done.stderr

    for var, value in [("WHARF_POOL_SIZE", "four"), ("WHARF_RETRY_JITTER", "lots"), ("WHARF_FAST_LEASES", "maybe")]:
        done = serve(["--print-config"], {var: value})
        assert done.returncode != 0, (var, done.stdout)
        assert f"environment variable {var}" in done.stderr and value in done.stderr, done.stderr
    # A flag given on the command line is not read from the environment, so its variable cannot break it.
    assert serve(["--pool-size", "2", "--print-config"], {"WHARF_POOL_SIZE": "four"}).returncode == 0


def hello(port: int, token: str) -> Optional[str]:
    """The role `token` gets, or None when refused."""
    with Client("127.0.0.1", port, token=token, retry=None) as c:
        try:
            c.connect()
        except WharfError as e:
            assert e.code == -32001, e
            return None
        return c.role


def test_a_server_configured_by_environment_and_file_only_serves_with_hashed_tokens(tmp_path):
    port, http_port = free_port(), free_port()
    hashed = "hashed-token-secret"
    tokens = tmp_path / "tokens"
    tokens.write_text(
        "# one plain, one hashed\n"
        "admin:plain-admin-secret\n"
        f"producer:sha256:{hashlib.sha256(hashed.encode()).hexdigest()}\n"
    )
    config = tmp_path / "wharf.json"
    config.write_text(json.dumps({"token-file": str(tokens), "http-listen": f"127.0.0.1:{http_port}",
                                  "listen": "127.0.0.1:1", "log-level": "warning"}))
    env = without_settings({"WHARF_DATABASE_URL": fresh_database(), "WHARF_LISTEN": f"127.0.0.1:{port}",
                     "WHARF_CONFIG": str(config)})
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([wharf_bin(), "serve"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if hello(port, "plain-admin-secret") == "admin":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        # WHARF_LISTEN won over the file's listen; the file's token file and HTTP address were used.
        assert hello(port, hashed) == "producer"
        # The digest itself is not a token.
        assert hello(port, hashlib.sha256(hashed.encode()).hexdigest()) is None
        assert hello(port, "sha256:" + hashlib.sha256(hashed.encode()).hexdigest()) is None
        assert hello(port, "hashed-token-secreT") is None
        with Client("127.0.0.1", port, token=hashed) as c:
            assert c.call("jobs.enqueue", {"queue": "q", "kind": "k"})["id"]
        # Bearer tokens on the HTTP side door go through the same table.
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "server.info"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/rpc", data=body,
                                     headers={"Authorization": f"Bearer {hashed}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.loads(r.read())["result"]["replicaId"]
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/rpc", data=body,
                                     headers={"Authorization": "Bearer not-a-token"})
        try:
            urllib.request.urlopen(req, timeout=10)
            raise AssertionError("an unknown bearer token was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_a_malformed_token_digest_is_refused_at_start(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("admin:sha256:not-hex\n")
    done = serve(["--database", "host=/nonexistent", "--token-file", str(tokens)])
    assert done.returncode != 0
    assert "sha256:" in done.stderr and "64 hex digits" in done.stderr, done.stderr
    assert "not-hex" not in done.stderr


def test_the_readme_configuration_snippet_runs_and_says_what_it_claims(tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Configuration", 1)[1]
    snippet = section.split("```sh\n", 1)[1].split("```", 1)[0]
    env = without_settings({"PATH": os.path.dirname(wharf_bin()) + os.pathsep + os.environ["PATH"]})
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = {line.split(" = ")[0]: line for line in done.stdout.splitlines() if " = " in line}
    assert lines["pool-size"].startswith("pool-size = 6  # flag"), lines["pool-size"]
    assert lines["listen"].startswith("listen = 0.0.0.0:7411  # env WHARF_LISTEN"), lines["listen"]
    assert lines["log-format"].startswith("log-format = json  # config file wharf.json"), lines["log-format"]
    assert lines["token-file"].startswith("token-file = /etc/wharf/tokens  # config file"), lines["token-file"]
    assert "wharf:<redacted>@db.internal" in lines["database-url"] and "secret" not in done.stdout


def test_a_value_refused_after_parsing_still_names_its_source(tmp_path):
    done = serve(["--database", "host=/nonexistent"], {"WHARF_JOB_RETENTION": "soon"})
    assert done.returncode != 0
    assert "not a duration: soon" in done.stderr and "env WHARF_JOB_RETENTION" in done.stderr, done.stderr
    config = tmp_path / "wharf.json"
    config.write_text(json.dumps({"cron-min-period-ms": 0}))
    done = serve(["--database", "host=/nonexistent", "--config", str(config)])
    assert done.returncode != 0
    assert "--cron-min-period-ms" in done.stderr and f"config file {config}" in done.stderr, done.stderr
