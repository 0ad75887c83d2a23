"""A pixel loader over raw keep-alive sockets that records which loads were acknowledged."""

from __future__ import annotations

import asyncio
import threading

from tests.support.pixeltrack_process import UA


class PixelLoader:
    """Loads each pixel at most once over `connections` keep-alive sockets, in a thread, until stopped.

    A 200 is an acknowledged load. A request whose connection breaks before the answer is
    not acknowledged and not retried (the pixel is reported as failed: the server may or may
    not have recorded it). While the server is down, connecting fails and consumes no pixel.
    """

    def __init__(self, port: int, paths: list[str], connections: int = 8, pause: float = 0.0) -> None:
        self.port = port
        self.pause = pause  # seconds each connection waits between two loads (a paced load)
        self.paths = paths
        self.connections = connections
        self.acked: list[int] = []
        self.failed: list[int] = []
        self.other: list[tuple[int, int]] = []
        self.refused = 0
        self._next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="pixel-loader", daemon=True)

    async def _connection(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while not self._stop.is_set() and self._next < len(self.paths):
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    self.refused += 1
                    await asyncio.sleep(0.005)  # the server is restarting: poll until it listens again
                    continue
            assert reader is not None
            i, self._next = self._next, self._next + 1  # one event loop: no lock needed
            request = f"GET {self.paths[i]} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {UA}\r\n\r\n"
            try:
                writer.write(request.encode())
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(head.split(b" ", 2)[1])
                length, close = 0, False
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                    elif line.startswith(b"connection:") and b"close" in line:
                        close = True
                await asyncio.wait_for(reader.readexactly(length), 10)
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                self.failed.append(i)
                writer.close()
                reader = writer = None
                continue
            if status == 200:
                self.acked.append(i)
            else:
                self.other.append((i, status))
            if self.pause:
                await asyncio.sleep(self.pause)
            if close:  # the server is shutting down: do not send on this connection again
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def _run(self) -> None:
        await asyncio.gather(*(self._connection() for _ in range(self.connections)))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)

    def exhausted(self) -> bool:
        return self._next >= len(self.paths)
