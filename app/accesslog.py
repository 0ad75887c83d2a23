"""What the server logs per request: by default nothing; with ACCESS_LOG=true a redacted line.

Pixel and click URLs carry tracking tokens and every load comes from a recipient's IP, so
uvicorn's access log (`GET /o/<token>.gif` with the client address, at INFO) would write
both to the logs, and it costs pixel throughput. The app sets this up itself, so every way
of serving it (`pixeltrack serve`, the compose/Dockerfile `uvicorn` command, one worker or
several) logs the same.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
# A tracking path keeps its prefix; the token (and any query string) goes.
_TRACKING_PATH = re.compile(r"^(/[oc]/)[^\s]*")


def redact_path(path: str) -> str:
    return _TRACKING_PATH.sub(r"\1<redacted>", path)


class RedactAccessLog(logging.Filter):
    """uvicorn logs `%s - "%s %s HTTP/%s" %d` with (client address, method, path, version, status):
    the client address is dropped and tracking tokens are replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            _client, method, path, version, status = args
            record.args = ("-", method, redact_path(str(path)), version, status)
        return True


def configure_access_log(enabled: bool) -> None:
    """Off: like `uvicorn --no-access-log` (uvicorn's protocol then skips the per-request log call
    entirely, as it checks for handlers when each connection opens). On: a redacted line."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not enabled:
        logger.handlers = []
        logger.propagate = False
        return
    if not any(isinstance(f, RedactAccessLog) for f in logger.filters):
        logger.addFilter(RedactAccessLog())
