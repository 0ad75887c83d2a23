"""ACCESS_LOG=true: one line per request, never a tracking token or a client address."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from app.accesslog import ACCESS_LOGGER, configure_access_log


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(ACCESS_LOGGER)
    saved = (list(logger.handlers), list(logger.filters), logger.propagate, logger.level)
    yield logger
    logger.handlers, logger.filters, logger.propagate = saved[0], saved[1], saved[2]
    logger.setLevel(saved[3])


def _uvicorn_line(logger: logging.Logger, path: str) -> list[str]:
    """What uvicorn's protocol logs for one request (its exact call), as formatted."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger.addHandler(Collect())
    logger.setLevel(logging.INFO)
    logger.info('%s - "%s %s HTTP/%s" %d', "203.0.113.7:51000", "GET", path, "1.1", 200)
    return lines


def test_enabled_access_log_redacts_tokens_and_client_addresses(access_logger: logging.Logger) -> None:
    configure_access_log(True)
    [pixel] = _uvicorn_line(access_logger, "/o/gAAAAABsecret-token.gif")
    [click] = _uvicorn_line(access_logger, "/c/gAAAAABclick-token?x=1")[-1:]
    [api] = _uvicorn_line(access_logger, "/api/v1/campaigns?limit=5")[-1:]
    assert pixel == '- - "GET /o/<redacted> HTTP/1.1" 200'
    assert click == '- - "GET /c/<redacted> HTTP/1.1" 200'
    assert api == '- - "GET /api/v1/campaigns?limit=5 HTTP/1.1" 200'


def test_default_is_no_access_log_at_all(access_logger: logging.Logger) -> None:
    access_logger.addHandler(logging.StreamHandler())
    configure_access_log(False)
    # uvicorn decides per connection from hasHandlers(): no handler, no per-request log call.
    assert not access_logger.hasHandlers()
