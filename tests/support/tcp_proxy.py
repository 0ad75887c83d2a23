"""A loopback TCP proxy that can freeze: it stops forwarding in both directions while keeping
every socket open, like a database host that hangs or a network partition (no FIN, no RST)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class FreezableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._pumps = 0  # running pumps, and those of them parked by freeze()
        self._parked = 0
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def freeze(self) -> None:
        """Stop forwarding; returns once no pump is mid-forward (a pump in `recv` when the flag
        was set would still pass that one chunk on)."""
        self._frozen.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._lock:
                if self._parked >= self._pumps:
                    return
            self._closed.wait(0.005)
        raise AssertionError("the proxy's pumps did not stop forwarding within 5 s")

    def thaw(self) -> None:
        self._frozen.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self._pumps += 2
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), name="proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            self._forward(src, dst)
        finally:
            with self._lock:
                self._pumps -= 1

    def _forward(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.02)
        parked = False
        while not self._closed.is_set():
            if self._frozen.is_set():
                if not parked:
                    with self._lock:
                        self._parked += 1
                    parked = True
                self._closed.wait(0.01)  # not reading: the bytes wait in the kernel's buffers
                continue
            if parked:
                with self._lock:
                    self._parked -= 1
                parked = False
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if parked:
            with self._lock:
                self._parked -= 1

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
