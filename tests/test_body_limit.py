"""Request bodies: authentication before the body is read; MAX_BODY_BYTES enforced while streaming.

The slow-path tests talk raw HTTP to a real uvicorn server: they declare (or stream) a body far
larger than what they send, then wait (bounded) for the answer. A server that reads the body
before answering never answers in time.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.main import create_app
from app.models import Campaign, Contact
from app.settings import Settings
from tests.helpers import assert_error, count
from tests.live import live_server

LIMIT = 64 * 1024
HUGE = 80 * 1024 * 1024


@pytest.fixture
def base(settings: Settings, engine: Engine) -> Iterator[str]:
    """A live server of the app with MAX_BODY_BYTES = 64 KiB."""
    app = create_app(settings.model_copy(update={"max_body_bytes": LIMIT}))
    with live_server(app) as url:
        yield url


def _exchange(base: str, head: str, chunks: list[bytes], timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
    """Send the request head and `chunks`, then read the answer (status, headers, JSON body)."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(head.encode() + b"\r\n")
        for chunk in chunks:
            sock.sendall(chunk)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                part = sock.recv(65536)
                assert part, "connection closed without an answer"
                data += part
            head_bytes, _, body = data.partition(b"\r\n\r\n")
            lines = head_bytes.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            while len(body) < int(headers["content-length"]):
                part = sock.recv(65536)
                assert part, "connection closed mid-answer"
                body += part
        except TimeoutError:
            pytest.fail(f"no answer within {timeout} s: the server waits for the whole body")
    return int(lines[0].split()[1]), headers, json.loads(body)


def _post(path: str, *extra: str) -> str:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json", *extra, ""])


def test_unauthenticated_huge_post_is_refused_before_its_body_is_read(base: str, db: Any) -> None:
    status, headers, body = _exchange(base, _post("/api/v1/campaigns", f"Content-Length: {HUGE}"), [b"{" * 65536])
    assert status == 401
    assert body == {"detail": "Not authenticated.", "code": "not_authenticated"}
    assert headers["www-authenticate"] == "Bearer"
    assert count(db, Campaign) == 0


def test_invalid_token_is_refused_before_the_body_is_read(base: str) -> None:
    head = _post("/api/v1/campaigns", f"Content-Length: {HUGE}", "Authorization: Bearer not.a.jwt")
    status, _, body = _exchange(base, head, [b"{" * 65536])
    assert status == 401
    assert body["code"] == "invalid_token"


def test_declared_length_over_the_limit_is_413_at_once(base: str, headers: dict[str, str], db: Any) -> None:
    head = _post("/api/v1/campaigns", f"Content-Length: {HUGE}", f"Authorization: {headers['Authorization']}")
    status, _, body = _exchange(base, head, [b"{" * 65536])
    assert status == 413
    assert body == {"detail": f"The request body is larger than {LIMIT} bytes.", "code": "payload_too_large"}
    assert count(db, Campaign) == 0


def test_streamed_body_over_the_limit_is_413_while_streaming(base: str, headers: dict[str, str], db: Any) -> None:
    head = _post("/api/v1/campaigns", "Transfer-Encoding: chunked", f"Authorization: {headers['Authorization']}")
    piece = b"x" * 16384
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (LIMIT // len(piece) + 1)  # no last chunk: never ends
    status, _, body = _exchange(base, head, chunks)
    assert status == 413
    assert set(body) == {"detail", "code"}
    assert body["code"] == "payload_too_large"
    assert count(db, Campaign) == 0


def test_a_public_form_body_is_limited_too(base: str) -> None:
    head = "\r\n".join(
        [
            *("POST /auth/token HTTP/1.1", "Host: test", "Content-Type: application/x-www-form-urlencoded"),
            *(f"Content-Length: {HUGE}", ""),
        ]
    )
    status, _, body = _exchange(base, head, [b"a" * 65536])
    assert status == 413
    assert body["code"] == "payload_too_large"


@pytest.mark.slow  # ~12 s: out of the fast loop
def test_the_default_limit_holds_10000_contacts_at_their_maximum_lengths(
    client: TestClient, settings: Settings, headers: dict[str, str], tree: dict[str, Any], db: Any
) -> None:
    assert settings.max_body_bytes == 8 * 1024 * 1024
    domain = ".".join(["d" * 63, "e" * 63, "f" * 63, "g" * 50]) + ".com"  # 246 characters
    rows = [
        {
            "email": f"{i:07d}@{domain}",  # 254 characters, the longest an address may be
            "name": "N" * 200,
            "scheduled_at": "2026-05-01T09:00:00.123456+00:00",
            "status": "scheduled",
            "sent_at": "2026-05-01T09:00:00.123456+00:00",
        }
        for i in range(10_000)
    ]
    assert len(rows[0]["email"]) == 254
    payload = json.dumps(rows).encode()
    assert len(payload) <= settings.max_body_bytes
    group_id = tree["group"].id
    response = client.post(
        f"/api/v1/groups/{group_id}/contacts",
        content=payload,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text[:500]
    assert response.json()["total"] == 10_000
    assert count(db, Contact, group_id=group_id) == 10_001  # and the tree's own contact


def test_over_the_limit_through_the_app_answers_the_one_error_shape(settings: Settings, engine: Engine) -> None:
    app = create_app(settings.model_copy(update={"max_body_bytes": LIMIT}))
    with TestClient(app) as small:
        response = small.post("/auth/token", content=b"a" * (LIMIT + 1))
    assert_error(response, 413, "payload_too_large")
