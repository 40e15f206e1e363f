"""A TCP proxy on 127.0.0.1 in front of a test PostgreSQL server.

`freeze(marker)` makes the proxy silently stop relaying, in both directions,
on every open connection whose start-up packet contains `marker` (psycopg
sends application_name there). The sockets stay open, so the client sees no
error: the way a dropped network path or a stale NAT entry looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict, make_conninfo

READ_BYTES = 64 * 1024
HEAD_BYTES = 4096
START_TIMEOUT_SECONDS = 10


@dataclass
class _Relay:
    head: bytes = b""
    frozen: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class PgProxy:
    def __init__(self, database_url: str) -> None:
        self.params = conninfo_to_dict(database_url)
        self.relays: list[_Relay] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._closed: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)

    def start(self) -> PgProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(timeout=START_TIMEOUT_SECONDS)
        return self

    @property
    def url(self) -> str:
        """The test database's URL, through the proxy."""
        params = {key: value for key, value in self.params.items() if key not in ("host", "port")}
        return make_conninfo("", **params, host="127.0.0.1", port=str(self.port), sslmode="disable")

    def freeze(self, marker: bytes) -> int:
        """Stop relaying on open connections whose start-up packet contains `marker`; return how many."""
        matched = [relay for relay in self.relays if marker in relay.head]
        for relay in matched:
            relay.frozen = True
        return len(matched)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> int:
        self._closed = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host = self.params.get("host") or "127.0.0.1"
        port = int(self.params.get("port") or 5432)
        if host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, port)

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        relay = _Relay()
        self.relays.append(relay)
        try:
            server_reader, server_writer = await self._open_upstream()
        except OSError:
            client_writer.close()
            return
        relay.writers = [client_writer, server_writer]
        await asyncio.gather(
            self._pump(relay, client_reader, server_writer, record=True),
            self._pump(relay, server_reader, client_writer, record=False),
        )

    async def _pump(self, relay: _Relay, source: asyncio.StreamReader,
                    target: asyncio.StreamWriter, *, record: bool) -> None:
        assert self._closed is not None
        try:
            while True:
                data = await source.read(READ_BYTES)
                if not data:
                    break
                if record and len(relay.head) < HEAD_BYTES:
                    relay.head += data[:HEAD_BYTES]
                if relay.frozen:
                    # Swallow this and everything after it, keeping the socket open.
                    await self._closed.wait()
                    return
                target.write(data)
                await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                target.close()

    async def _shutdown(self) -> None:
        assert self._closed is not None
        self._closed.set()
        self._server.close()
        for relay in self.relays:
            for writer in relay.writers:
                with contextlib.suppress(Exception):
                    writer.close()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        for relay in self.relays:
            for writer in relay.writers:
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        await self._server.wait_closed()
