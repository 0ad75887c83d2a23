"""Code nothing used is gone (issue #11 item 9), so no one maintains or trusts it."""

from __future__ import annotations

import dataclasses
import inspect

from app import main
from app.services import counters
from app.tracking.worker import StreamWorker, WorkerStats


def test_worker_has_no_unused_batch_hook_or_stat() -> None:
    assert "on_batch" not in inspect.signature(StreamWorker).parameters
    assert "last_batch_size" not in {field.name for field in dataclasses.fields(WorkerStats)}


def test_counters_have_no_unused_open_column() -> None:
    assert not hasattr(counters, "open_column")


def test_main_has_no_unused_logger() -> None:
    assert not hasattr(main, "log")
