"""A real uvicorn server on a free loopback port, in a background thread (concurrency tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from tests.support.processes import free_port


@contextmanager
def live_server(app: ASGIApp, *, timeout: float = 20.0) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def concurrent_gets(base: str, paths: list[str], *, connections: int = 200, timeout: float = 60.0) -> list[int]:
    """GET every path over `connections` simultaneous keep-alive sockets; returns the statuses in order.

    A minimal HTTP/1.1 client on asyncio streams: httpx's pool is far too slow for
    hundreds of truly concurrent requests.
    """
    import asyncio
    from urllib.parse import urlsplit

    url = urlsplit(base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    statuses: list[int] = [0] * len(paths)

    async def one_connection(indexes: list[int]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in indexes:
                writer.write(f"GET {paths[i]} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pytest\r\n\r\n".encode())
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                statuses[i] = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
        finally:
            writer.close()

    async def run() -> None:
        n = max(1, min(connections, len(paths)))
        shares = [list(range(k, len(paths), n)) for k in range(n)]
        await asyncio.wait_for(asyncio.gather(*(one_connection(s) for s in shares)), timeout)

    asyncio.run(run())
    return statuses
