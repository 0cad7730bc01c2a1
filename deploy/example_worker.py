"""An example worker for compose.yaml: runs `example.echo` jobs from queue `default`.

    python -m wharf.worker example_worker:worker

It connects to $WHARF_SERVER (HOST:PORT) with $WHARF_TOKEN (a worker token), over TLS when
$WHARF_CA_FILE names the CA that signed the server's certificate.
"""

import os
import ssl

import wharf

host, _, port = os.environ.get("WHARF_SERVER", "127.0.0.1:7411").rpartition(":")
ca_file = os.environ.get("WHARF_CA_FILE")
context = ssl.create_default_context(cafile=ca_file) if ca_file else None


def connect() -> wharf.Client:
    return wharf.Client(host, int(port), token=os.environ.get("WHARF_TOKEN"), ssl=context)


worker = wharf.Worker(connect, queues=["default"], concurrency=4)


@worker.task("example.echo")
def echo(payload):
    return {"echo": payload}
