"""The asyncio variant of `Client`, with the same surface (methods are coroutines)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any, Dict, Optional

from .errors import ConnectionLost, from_error
from .methods import METHODS, snake, wire_params


class _AsyncNamespace:
    def __init__(self, client: "AsyncClient", family: str) -> None:
        for method in METHODS[family]:
            full = f"{family}.{method}"

            def make(full: str = full):
                async def call(**kwargs: Any) -> Any:
                    return await client.call(full, wire_params(kwargs))
                return call

            setattr(self, snake(method), make())


class AsyncClient:
    """`await AsyncClient(...).jobs.enqueue(queue=..., kind=...)`; pipelined over one connection."""

    def __init__(self, host: str = "127.0.0.1", port: int = 7411, token: Optional[str] = None,
                 timeout: float = 30.0, client_name: str = "wharf-python-async") -> None:
        self.host, self.port, self.token, self.timeout, self.client_name = host, port, token, timeout, client_name
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._ids = itertools.count(1)
        self._waiting: Dict[int, asyncio.Future] = {}
        self._read_task: Optional[asyncio.Task] = None
        self._connecting: Optional[asyncio.Lock] = None
        self.role: Optional[str] = None
        for family in METHODS:
            setattr(self, family, _AsyncNamespace(self, family))

    async def _ensure(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None:
                return
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._read_task = asyncio.ensure_future(self._read_loop(self._reader))
            params: Dict[str, Any] = {"client": self.client_name}
            if self.token:
                params["token"] = self.token
            self.role = (await self._send("session.hello", params))["role"]

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                message = json.loads(line)
                for m in message if isinstance(message, list) else [message]:
                    fut = self._waiting.pop(m.get("id"), None) if "id" in m else None
                    if fut is not None and not fut.done():
                        fut.set_result(m)
        except (OSError, ValueError):
            pass
        self._writer = None
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionLost("connection closed before the reply"))

    async def _send(self, method: str, params: Optional[Dict[str, Any]]) -> Any:
        if self._writer is None:
            raise ConnectionLost("not connected")
        request_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        request: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params:
            request["params"] = params
        self._writer.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        await self._writer.drain()
        wait = self.timeout + (params.get("waitMs", 0) / 1000.0 if isinstance(params, dict) else 0)
        reply = await asyncio.wait_for(fut, wait)
        if "error" in reply:
            raise from_error(reply["error"])
        return reply.get("result")

    async def call(self, method: str, params: Optional[Dict[str, Any]] = None) -> Any:
        await self._ensure()
        return await self._send(method, params)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._read_task is not None:
            self._read_task.cancel()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
