"""A private nginx running the shipped edge configuration (deploy/nginx/pixeltrack.conf).

Only the site values the file marks `# site:` (and documents in its header) are replaced: the
port, the API servers, the spool log's directory and the temporary files' directory. Everything
else (locations, headers, log format) is the file as shipped. nginx runs in the foreground with
its own prefix, pid file and umask 077 (as the compose service does), so the spool log is 0600.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
EDGE_CONF = ROOT / "deploy" / "nginx" / "pixeltrack.conf"
SITE = {  # the shipped value → what replaces it (formatted with the instance's values)
    "listen 8080;": "listen 127.0.0.1:{port};",
    "server api:8000;": "{servers}",
    "/var/spool/pixeltrack": "{spool}",
    "/var/cache/nginx": "{temp}",
}


def nginx_binary() -> str:
    """nginx, or skip (fail when CI=true: scripts/test.sh installs nginx-light)."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if binary is None:
        message = "nginx is not installed (apt-get install nginx-light)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required when CI=true)", pytrace=False)
        pytest.skip(message)
    return binary


def render(text: str, *, port: int, api_ports: list[int], spool: Path, temp: Path) -> str:
    """The shipped configuration with its site values replaced (each must be in the file)."""
    servers = " ".join(f"server 127.0.0.1:{p};" for p in api_ports)
    values = {"port": port, "servers": servers, "spool": spool, "temp": temp}
    for shipped, replacement in SITE.items():
        assert shipped in text, f"{shipped!r} is no longer in {EDGE_CONF.name}: update its site values"
        text = text.replace(shipped, replacement.format(**values))
    return text


class PrivateNginx:
    def __init__(self, directory: Path, api_ports: list[int], binary: str | None = None) -> None:
        self.binary = binary or nginx_binary()
        self.dir = directory
        self.spool = directory / "spool"
        self.temp = directory / "temp"
        for path in (self.dir, self.spool, self.temp):
            path.mkdir(parents=True, exist_ok=True)
        self.spool.chmod(0o700)
        self.port = free_port()
        self.conf = directory / "nginx.conf"
        self.conf.write_text(
            render(EDGE_CONF.read_text(), port=self.port, api_ports=api_ports, spool=self.spool, temp=self.temp)
        )
        self.log = self.spool / "pixels.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self, *extra: str) -> list[str]:
        pid = self.dir / "nginx.pid"
        # As root, nginx's workers would run as `nobody`, and they reopen the log themselves (after a
        # rotation) in this run's private directories: run them as the user running the test.
        user = "user root;" if os.geteuid() == 0 else ""
        globals_ = f"daemon off; pid {pid}; {user}"
        return [self.binary, "-p", str(self.dir), "-c", str(self.conf), "-g", globals_, *extra]

    def start(self) -> None:
        out = (self.dir / "nginx.out").open("ab")
        self.proc = subprocess.Popen(self._argv(), stdout=out, stderr=subprocess.STDOUT, umask=0o077)
        out.close()
        proc = self.proc

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited ({proc.returncode}): {(self.dir / 'nginx.out').read_text()}")
            import socket

            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(listening, "nginx to listen", timeout=20, interval=0.02)

    def reopen(self) -> None:
        """`nginx -s reopen`: the spool log reopened (a new file at its path after a rename)."""
        subprocess.run(self._argv("-s", "reopen"), check=True, capture_output=True, timeout=20)

    def stop(self) -> None:
        stop_process(self.proc)
