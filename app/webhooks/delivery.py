"""One HTTP delivery to a receiver, bounded every way.

The address is checked again right before sending (app/webhooks/ssrf.py) and the request goes to
that very address (the URL's host in `Host` and, for https, in the TLS SNI and the certificate
check), so DNS rebinding cannot move it. Redirects are not followed (a 3xx is a failure), each
step and the whole attempt are bounded by WEBHOOK_TIMEOUT_SECONDS (so an attempt always ends within
its lease, app/webhooks/batches.py), and at most 64 KB of the answer is read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from app.webhooks import ssrf

MAX_READ = 64 * 1024
ERROR_MAX = 200


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    duration_ms: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool
) -> Outcome:
    started = time.perf_counter()

    def took() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        scheme, host, port = ssrf.parts(url)
        address = ssrf.resolve(host, port, allow_private=allow_private)
    except ssrf.UnsafeUrl as exc:
        return Outcome(None, took(), f"refused: {exc}"[:ERROR_MAX])
    target = httpx.URL(url).copy_with(host=address)
    sent = {**headers, "host": urlsplit(url).netloc}
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    try:
        with client.stream(
            "POST", target, content=body, headers=sent, timeout=timeout, extensions=extensions
        ) as response:
            read = 0
            for chunk in response.iter_raw():
                read += len(chunk)
                if time.perf_counter() - started > timeout:  # a slow drip: the whole answer is bounded too
                    return Outcome(None, took(), f"timeout after {timeout:g} s")
                if read >= MAX_READ:
                    break
            if time.perf_counter() - started > timeout:
                return Outcome(None, took(), f"timeout after {timeout:g} s")
            return Outcome(response.status_code, took())
    except httpx.TimeoutException:
        return Outcome(None, took(), f"timeout after {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome(None, took(), f"{exc.__class__.__name__}: {exc}"[:ERROR_MAX])


def new_client() -> httpx.Client:
    """The dispatcher's client: no redirects, no proxies from the environment, pooled connections."""
    return httpx.Client(follow_redirects=False, trust_env=False, limits=httpx.Limits(max_connections=256))
