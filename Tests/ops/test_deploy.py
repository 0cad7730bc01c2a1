"""deploy/ against the binary: no Docker engine or Kubernetes runs here, so every YAML file is parsed and
every flag, WHARF_* variable, port and probe path the files use is checked against `wharf serve` itself
(`--help`, `--print-config`'s variable names, and a real server configured the way each file configures
it, asked on the paths each probe, health check and scrape uses). deploy/README.md says what this covers.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List, Set

import yaml
from ops_support import self_signed, without_settings
from wharf import Client
from wharf.testing import free_port, fresh_database, wharf_bin

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(DEPLOY, "kubernetes")


def load(path: str) -> List[Any]:
    with open(os.path.join(DEPLOY, path)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kind(kind_name: str) -> List[Dict[str, Any]]:
    docs = []
    for path in glob.glob(os.path.join(K8S, "*.yaml")):
        docs += [d for d in load(path) if d.get("kind") == kind_name]
    return docs


def help_flags() -> Set[str]:
    done = subprocess.run([wharf_bin(), "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return set(re.findall(r"--([a-z0-9-]+)", done.stdout))


def environment_names() -> Set[str]:
    """The WHARF_* variable of every setting, as `--print-config` names them."""
    done = subprocess.run([wharf_bin(), "serve", "--print-config"], env=without_settings(), capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    names = set(re.findall(r"\bWHARF_[A-Z0-9_]+", done.stdout))
    assert {"WHARF_DATABASE_URL", "WHARF_LISTEN", "WHARF_TOKENS", "WHARF_HTTP_LISTEN"} <= names, names
    return names


def dockerfile() -> str:
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        return f.read()


def dockerfile_env() -> Dict[str, str]:
    text = dockerfile().split("FROM debian:bookworm-slim", 1)[1]  # the runtime stage
    m = re.search(r"^ENV (.*?)(?<!\\)$", text, re.M | re.S)
    assert m, "the runtime stage sets no ENV"
    return dict(p.split("=", 1) for p in shlex.split(m.group(1).replace("\\\n", " ")))


def compose() -> Dict[str, Any]:
    return load("compose.yaml")[0]


def wharf_services() -> Dict[str, Dict[str, Any]]:
    services = compose()["services"]
    return {name: s for name, s in services.items() if s.get("build", {}).get("dockerfile") == "deploy/Dockerfile"}


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_every_yaml_file_parses():
    files = glob.glob(os.path.join(DEPLOY, "**", "*.yaml"), recursive=True)
    files += glob.glob(os.path.join(DEPLOY, "**", "*.yml"), recursive=True)
    names = {os.path.relpath(f, DEPLOY) for f in files}
    assert {"compose.yaml", "prometheus.yml", "wharf-alerts.yml", "kubernetes/deployment.yaml"} <= names, names
    for f in files:
        docs = load(f)
        assert docs and all(isinstance(d, dict) for d in docs), f
    # Kustomize applies every manifest of the folder.
    kustomization = load("kubernetes/kustomization.yaml")[0]
    manifests = {os.path.basename(f) for f in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_every_alert_names_metrics_the_server_documents():
    with open(os.path.join(ROOT, "Protocol", "http.md")) as f:
        documented = set(re.findall(r"^\| `(wharf_[a-z0-9_]+)`", f.read(), re.M))
    assert "wharf_jobs_dead_rows" in documented and len(documented) > 20, documented
    rules = [r for g in load("wharf-alerts.yml")[0]["groups"] for r in g["rules"]]
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for r in rules for m in re.findall(r"wharf_[a-z0-9_]+", r["expr"])}
    assert used and used <= documented, used - documented


def test_every_variable_and_flag_used_exists_in_the_binary():
    names, flags = environment_names(), help_flags()
    used: Dict[str, str] = {}
    for name in dockerfile_env():
        used[name] = "Dockerfile"
    for service, s in wharf_services().items():
        for name in s["environment"]:
            used[name] = f"compose.yaml {service}"
    for cm in kind("ConfigMap"):
        for name in cm["data"]:
            used[name] = "kubernetes/configmap.yaml"
    for d in kind("Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                used[e["name"]] = "kubernetes/deployment.yaml"
    with open(os.path.join(DEPLOY, "wharf.env.example")) as f:
        for line in f:
            m = re.match(r"#?\s*(WHARF_[A-Z0-9_]+)", line)
            if m:
                used[m.group(1)] = "wharf.env.example"
    assert len(used) >= 15, used
    unknown = {n: where for n, where in used.items() if n not in names}
    assert not unknown, f"variables that no setting reads: {unknown}"

    # Flags: the image's command, Kubernetes' args, the systemd unit's ExecStart.
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile(), re.M).group(1))
    args = [a for d in kind("Deployment") for c in d["spec"]["template"]["spec"]["containers"] for a in c["args"]]
    with open(os.path.join(DEPLOY, "wharf.service")) as f:
        unit = f.read()
    exec_start = re.search(r"^ExecStart=(.*?)(?<!\\)$", unit, re.M | re.S).group(1)
    assert cmd == ["serve"] and args == ["serve"] and " serve " in exec_start
    used_flags = set(re.findall(r"--([a-z0-9-]+)", exec_start))
    assert used_flags and used_flags <= flags, used_flags - flags

    # The example worker reads the variables its service sets.
    worker = compose()["services"]["worker"]
    with open(os.path.join(DEPLOY, "example_worker.py")) as f:
        source = f.read()
    for name in worker["environment"]:
        if name.startswith("WHARF_"):
            assert f'"{name}"' in source, name


def test_ports_agree_with_the_listen_addresses():
    env = dockerfile_env()
    rpc, http = port_of(env["WHARF_LISTEN"]), port_of(env["WHARF_HTTP_LISTEN"])
    assert sorted(int(p) for p in re.findall(r"^EXPOSE (.*)$", dockerfile(), re.M)[0].split()) == sorted([rpc, http])
    assert f"/dev/tcp/127.0.0.1/{http}" in dockerfile()  # the health check asks the HTTP listener
    for name, s in wharf_services().items():
        assert port_of(s["environment"]["WHARF_LISTEN"]) == rpc and port_of(s["environment"]["WHARF_HTTP_LISTEN"]) == http
        inside = {int(p.rsplit(":", 1)[1]) for p in s["ports"]}
        assert inside == {rpc, http}, (name, s["ports"])
        assert s["environment"]["WHARF_TOKEN_FILE"] in {x["target"] for x in s["secrets"]}
    cm = kind("ConfigMap")[0]["data"]
    (deployment,) = kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"rpc": port_of(cm["WHARF_LISTEN"]), "http": port_of(cm["WHARF_HTTP_LISTEN"])}
    (service,) = kind("Service")
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports


def test_kubernetes_manifests_have_the_shape_asked_for():
    (deployment,) = kind("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 3
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (service,) = kind("Service")
    (pdb,) = kind("PodDisruptionBudget")
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= pdb["spec"]["minAvailable"] < spec["replicas"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The image's user is the pod's.
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile()

    # Each path the ConfigMap names lies in a mounted Secret that has that key.
    cm = kind("ConfigMap")[0]["data"]
    secrets = {s["metadata"]["name"]: s for s in kind("Secret")}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for var in ("WHARF_TOKEN_FILE", "WHARF_TLS_CERT", "WHARF_TLS_KEY"):
        folder, key = os.path.split(cm[var])
        secret = secrets[mounts[folder]["secret"]["secretName"]]
        assert key in secret["stringData"], (var, key)
    assert secrets["wharf-tls"]["type"] == "kubernetes.io/tls"
    # The database URL comes from a Secret too, never from the ConfigMap.
    (db,) = [e for e in container["env"] if e["name"] == "WHARF_DATABASE_URL"]
    ref = db["valueFrom"]["secretKeyRef"]
    assert ref["key"] in secrets[ref["name"]]["stringData"]
    assert not any("DATABASE" in k or "TOKENS" == k[-6:] for k in cm)


class Serve:
    """`wharf serve` with exactly `env` (and `args`), stopped on exit."""

    def __init__(self, env: Dict[str, str], tmp_path, args: List[str]) -> None:
        base = without_settings()
        self.log_path = tmp_path / f"serve-{free_port()}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([wharf_bin(), *args], env={**base, **env}, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, http_port: int, scheme: str = "http") -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            if get(http_port, "/readyz", scheme) == 200:
                return
            time.sleep(0.1)
        raise AssertionError(self.log_path.read_text())

    def __enter__(self) -> "Serve":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.log.close()


def get(port: int, path: str, scheme: str = "http") -> int:
    # Like the kubelet: HTTPS without verifying the certificate.
    context = ssl._create_unverified_context() if scheme == "https" else None
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}{path}", timeout=5, context=context) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return -1


def healthcheck_command(http_port: int) -> List[str]:
    cmd = json.loads(re.search(r"^\s+CMD (\[.*\])$", dockerfile(), re.M).group(1))
    return [part.replace("/7412", f"/{http_port}") for part in cmd]


def test_a_server_configured_like_a_kubernetes_pod_answers_its_probes_and_scrapes(tmp_path):
    cm = dict(kind("ConfigMap")[0]["data"])
    tls = self_signed(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text("admin:k8s-admin-token\n")
    rpc_port, http_port = free_port(), free_port()
    # The pod's settings, with the mounted files and ports of this machine. The addresses stay 0.0.0.0,
    # which the server accepts only with the tokens and TLS the pod has.
    cm["WHARF_LISTEN"] = cm["WHARF_LISTEN"].rsplit(":", 1)[0] + f":{rpc_port}"
    cm["WHARF_HTTP_LISTEN"] = cm["WHARF_HTTP_LISTEN"].rsplit(":", 1)[0] + f":{http_port}"
    cm.update(WHARF_TOKEN_FILE=str(tokens), WHARF_TLS_CERT=tls["cert"], WHARF_TLS_KEY=tls["key"],
              WHARF_DATABASE_URL=fresh_database())
    (deployment,) = kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    with Serve(cm, tmp_path, container["args"]) as server:
        server.wait_ready(http_port, "https")
        for probe in ("readinessProbe", "livenessProbe"):
            get_ = container[probe]["httpGet"]
            assert get(http_port, get_["path"], get_["scheme"].lower()) == 200, probe
        # With TLS the HTTP port speaks only HTTPS: a plain request is refused.
        assert get(http_port, "/healthz") == 400
        # Prometheus's Kubernetes job, as it would scrape this pod (its scheme, the pods' CA).
        (job,) = [j for j in load("prometheus.yml")[0]["scrape_configs"] if "kubernetes_sd_configs" in j]
        assert "ca_file" in job["tls_config"]
        ctx = ssl.create_default_context(cafile=tls["cert"])
        with urllib.request.urlopen(f"{job['scheme']}://127.0.0.1:{http_port}{job['metrics_path']}", timeout=5,
                                    context=ctx) as r:
            assert r.status == 200 and b"wharf_" in r.read()
        # The image's HEALTHCHECK command, as Docker would run it (with the pod's TLS settings).
        assert subprocess.run(healthcheck_command(http_port), timeout=10, env={**os.environ, **cm}).returncode == 0
        ctx = ssl.create_default_context(cafile=tls["cert"])
        with Client("127.0.0.1", rpc_port, token="k8s-admin-token", ssl=ctx) as c:
            assert c.connect().role == "admin"
        # Logs are JSON lines, as the ConfigMap asks.
        first = server.log_path.read_text().splitlines()[0]
        assert json.loads(first)["replica"]
    # And the health check fails once nothing answers.
    assert subprocess.run(healthcheck_command(http_port), timeout=10, stderr=subprocess.DEVNULL,
                          env={**os.environ, **cm}).returncode != 0


def test_a_compose_replica_and_the_example_worker_run_jobs(tmp_path):
    env = {k: str(v) for k, v in wharf_services()["wharf-1"]["environment"].items()}
    rpc_port, http_port = free_port(), free_port()
    env.update(WHARF_LISTEN=f"0.0.0.0:{rpc_port}", WHARF_HTTP_LISTEN=f"0.0.0.0:{http_port}",
               WHARF_DATABASE_URL=fresh_database(), WHARF_TOKEN_FILE=os.path.join(DEPLOY, "tokens.example"))
    with Serve(env, tmp_path, ["serve"]) as server:
        server.wait_ready(http_port)
        # The image's HEALTHCHECK on a plain-HTTP replica.
        assert subprocess.run(healthcheck_command(http_port), timeout=10, env={**os.environ, **env}).returncode == 0
        worker_service = compose()["services"]["worker"]
        worker_env = {k: str(v) for k, v in worker_service["environment"].items()}
        worker_env.update(WHARF_SERVER=f"127.0.0.1:{rpc_port}",
                          PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "Clients", "python"), DEPLOY]))
        base = without_settings()
        cmd = [sys.executable if a == "python" else a for a in worker_service["command"]]
        worker = subprocess.Popen(cmd, env={**base, **worker_env}, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            with Client("127.0.0.1", rpc_port, token="replace-with-another-secret") as producer:
                job_id = producer.call("jobs.enqueue", {"queue": "default", "kind": "example.echo",
                                                        "payload": {"n": 1}})["id"]
                deadline = time.monotonic() + 30
                while True:
                    job = producer.call("jobs.get", {"id": job_id})
                    if job["state"] == "completed":
                        break
                    assert worker.poll() is None and time.monotonic() < deadline, (job, worker.poll())
                    time.sleep(0.1)
                assert job["result"] == {"echo": {"n": 1}}
        finally:
            worker.terminate()
            out, _ = worker.communicate(timeout=15)
        assert "Traceback" not in out, out
