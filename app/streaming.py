"""`PrimedStreamingResponse`: a streamed answer whose first piece is made before the status is sent.

The render and the send sheet create what a chunk of contacts needs, in its own transaction,
before streaming it (app/services/sendprep.py). The first chunk runs when the response is
called: after the request's own transaction has ended (`TransactionRoute` commits once the
endpoint has returned: on SQLite its write lock is released, so the chunk can take it) and before
`http.response.start`, so a database failure there still answers 503 in the one error shape
instead of a 200 cut short. A failure in a later chunk ends the stream early; every line sent
before it is complete and committed (resume with `after_contact_id`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class PrimedStreamingResponse(StreamingResponse):
    def __init__(
        self,
        content: Iterator[bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, media_type)
        self._source = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        first: bytes = await run_in_threadpool(next, self._source, b"")
        self.body_iterator = iterate_in_threadpool(itertools.chain([first], self._source))
        await super().__call__(scope, receive, send)
