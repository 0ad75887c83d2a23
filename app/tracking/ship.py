"""`pixeltrack ship --log PATH`: the edge's spool log (deploy/nginx/pixeltrack.conf) into the Redis stream.

nginx answers each pixel load itself and writes one JSON line to its spool log; ship tails that
log and turns each line into the event the API's pixel route would have made (app/tracking/tracker.py:
the same token codec, first-pass split, RESPECT_DNT / TRACKING_DISABLED / ANONYMIZE_IP rules), then
enqueues a batch through the API's own dedupe script (`DEDUPE_AND_ADD`), one call per partition
(`KeyScheme`). The worker moves the stream into the database as it does for the API's events.

Exactly once:
- A file's identity is the SHA-256 of its first line (the time to the millisecond, the client, the
  token): a renamed file keeps it, a truncated or replaced one gets a new one.
- An event's id is HMAC-SHA256(key, identity ":" line offset) cut to 24 hex digits (the format of
  `new_event_id`), the key derived with HKDF from the Fernet key under its own label: the same
  line always gets the same id, and nobody without the key can predict one (to pre-record and
  so suppress a load). The unique `event_id` of the database keeps one row per line.
- The state file (offsets per file, and the running totals) is replaced atomically only after
  Redis answered for the batch: a restart re-reads at most the last batch, with the same ids.

Files: the log's path is followed by inode. After a rotation (rename, then `nginx -s reopen`) the
renamed file is read to its end, then, once nothing was appended to it for `rotated_idle` seconds
(nginx workers reopen one by one), deleted: it holds tokens. A file shorter than its committed
offset was truncated: read again from the start under its new identity. Lines of forged or
unknown tokens (nginx answered them the GIF anyway) are dropped and counted.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from prometheus_client import Counter

from app import metrics
from app.clients import SyncRedis
from app.tracking.classify import first_pass
from app.tracking.events import OPEN, RECORD_SEP, Event, KeyScheme, anonymize_ip
from app.tracking.queue import DEDUPE_AND_ADD
from app.tracking.tokens import TokenCodec

log = logging.getLogger("pixeltrack.ship")

LABEL = b"pixeltrack edge event id v1"
STATE_VERSION = 1
MAX_LINE = 256 * 1024  # a longer "line" is not nginx's: skipped as malformed
MAX_BACKOFF = 10.0
LINES = Counter(
    "pixeltrack_ship_lines_total",
    "Spool log lines read by `pixeltrack ship`, by result: recorded, deduplicated, invalid_token (forged or "
    "unknown token: dropped), not_recorded (DNT / Sec-GPC with RESPECT_DNT, TRACKING_DISABLED, a non-200 or "
    "non-GET/HEAD line), malformed.",
    ["result"],
)
RESULTS = ("recorded", "deduplicated", "invalid_token", "not_recorded", "malformed")
for _result in RESULTS:
    LINES.labels(_result)


def event_key(fernet_key: str) -> bytes:
    """The HMAC key of edge event ids: HKDF-SHA256 of the Fernet key under this module's label."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL).derive(fernet_key.encode())


def event_id(key: bytes, identity: str, offset: int) -> str:
    return hmac.new(key, f"{identity}:{offset}".encode(), hashlib.sha256).hexdigest()[:24]


def identity_of(first_line: bytes) -> str:
    return hashlib.sha256(first_line).hexdigest()[:32]


@dataclass
class Totals:
    lines: int = 0
    recorded: int = 0
    deduplicated: int = 0
    invalid_token: int = 0
    not_recorded: int = 0
    malformed: int = 0
    files_deleted: int = 0


@dataclass
class Rules:
    """What the API's pixel route applies (Settings): the same here."""

    window_seconds: int = 3600
    respect_dnt: bool = False
    anonymize_ip: bool = False
    disabled: bool = False


@dataclass
class Tail:
    """One spool file being read: its open handle, inode, identity and committed offset."""

    handle: Any
    ino: int
    identity: str | None = None  # None until its first line is complete
    offset: int = 0
    rotated: bool = False  # the log's path names another file now
    last_growth: float = field(default_factory=time.monotonic)
    last_size: int = -1

    def size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size


def _first_line(handle: Any) -> bytes | None:
    handle.seek(0)
    line: bytes = handle.readline(MAX_LINE)
    return line if line.endswith(b"\n") else None


def _millis(stamp: str) -> int:
    seconds, _, fraction = stamp.partition(".")
    return int(seconds) * 1000 + int((fraction + "000")[:3])


class Shipper:
    def __init__(
        self,
        redis: SyncRedis,
        codec: TokenCodec,
        key: bytes,
        log_path: Path,
        state_path: Path,
        *,
        rules: Rules | None = None,
        scheme: KeyScheme | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.05,
        rotated_idle: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.codec = codec
        self.key = key
        self.path = log_path
        self.state_path = state_path
        self.rules = rules or Rules()
        self.scheme = scheme or KeyScheme()
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.rotated_idle = rotated_idle
        self.clock = clock
        self.script = redis.register_script(DEDUPE_AND_ADD)
        self.tails: list[Tail] = []
        self.totals = Totals()
        self.stopping = threading.Event()
        self._backoff = 0.0
        self._load_state()

    # --- state ------------------------------------------------------------------------------

    def _load_state(self) -> None:
        saved: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError):
            saved = json.loads(self.state_path.read_text())
        self.totals = Totals(**saved.get("totals", {}))
        for entry in saved.get("files", []):
            path = self._find(entry["ino"])
            if path is None:
                continue  # deleted (by us after shipping it, or by someone else)
            tail = self._open(path)
            if tail is None or tail.identity != entry["identity"]:
                if tail is not None:
                    tail.handle.close()
                continue  # the inode now holds another file
            tail.offset = entry["offset"]
            tail.rotated = path != self.path
            self.tails.append(tail)
        self._follow()

    def _commit(self) -> None:
        files = [{"ino": t.ino, "identity": t.identity, "offset": t.offset} for t in self.tails if t.identity]
        data = json.dumps({"version": STATE_VERSION, "files": files, "totals": asdict(self.totals)})
        temporary = self.state_path.with_name(self.state_path.name + ".tmp")
        with temporary.open("w") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.state_path)

    # --- files ------------------------------------------------------------------------------

    def _find(self, ino: int) -> Path | None:
        """The file with this inode: the log's path, or a renamed file next to it."""
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_ino == ino:
                return self.path
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.path.parent):
                if entry.is_file(follow_symlinks=False) and entry.inode() == ino:
                    return Path(entry.path)
        return None

    def _open(self, path: Path) -> Tail | None:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return None
        tail = Tail(handle, os.fstat(handle.fileno()).st_ino)
        first = _first_line(handle)
        tail.identity = None if first is None else identity_of(first)
        return tail

    def _follow(self) -> None:
        """Notice a rotation (the path names a new inode) or a truncation."""
        try:
            ino = self.path.stat().st_ino
        except FileNotFoundError:
            ino = None  # renamed, nginx not reopened yet: it still writes to the renamed file
        current = self.tails[-1] if self.tails and not self.tails[-1].rotated else None
        if ino is not None and (current is None or current.ino != ino):
            if current is not None:
                current.rotated = True
            tail = self._open(self.path)
            if tail is not None:
                self.tails.append(tail)
        for tail in self.tails:
            size = tail.size()
            if size < tail.offset:  # truncated: a new file under the same inode
                log.warning("spool log truncated: reading it again from the start")
                tail.identity, tail.offset = None, 0
            if size != tail.last_size:
                tail.last_size, tail.last_growth = size, self.clock()
            if tail.identity is None:
                first = _first_line(tail.handle)
                tail.identity = None if first is None else identity_of(first)

    def _retire(self) -> bool:
        """Delete rotated files read to their end and idle: True if one was."""
        for tail in list(self.tails):
            idle = self.clock() - tail.last_growth >= self.rotated_idle
            if tail.rotated and idle and tail.offset >= tail.size():
                path = self._find(tail.ino)
                if path is not None and path != self.path:
                    path.unlink()
                tail.handle.close()
                self.tails.remove(tail)
                self.totals.files_deleted += 1
                self._commit()
                return True
        return False

    def _read(self, tail: Tail) -> tuple[list[tuple[int, bytes]], int]:
        """Up to batch_size complete lines from the committed offset: (offset, line) pairs and the end."""
        handle = tail.handle
        handle.seek(tail.offset)
        lines: list[tuple[int, bytes]] = []
        at = tail.offset
        while len(lines) < self.batch_size:
            line = handle.readline(MAX_LINE)
            if not line.endswith(b"\n"):
                if len(line) < MAX_LINE:
                    break  # a line being written: read it next time
                lines.append((at, b""))  # too long: malformed (skipped to the next newline below)
                rest = handle.readline()
                at += len(line) + len(rest)
                continue
            lines.append((at, line))
            at += len(line)
        return lines, at

    # --- lines → events ---------------------------------------------------------------------

    def _event(self, identity: str, offset: int, line: bytes) -> Event | str:
        """The event of a line, or the result it is counted under."""
        try:
            fields = json.loads(line.decode("latin-1"))
            token, method, status = fields["tok"], fields["m"], fields["s"]
            stamp = _millis(fields["t"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return "malformed"
        if status != "200" or method not in ("GET", "HEAD"):
            return "not_recorded"
        ref = self.codec.decode_pixel(token) if isinstance(token, str) else None
        if ref is None:
            metrics.invalid_token(OPEN)
            return "invalid_token"
        if self.rules.disabled:
            return "not_recorded"
        if self.rules.respect_dnt and "1" in (str(fields.get("dnt", "")).strip(), str(fields.get("gpc", "")).strip()):
            return "not_recorded"
        ua = str(fields.get("ua", ""))
        purpose = next((str(fields[k]) for k in ("p", "sp", "xp", "xm") if fields.get(k)), "")
        ip = str(fields.get("ip", ""))
        if self.rules.anonymize_ip and ip:
            ip = anonymize_ip(ip)
        machine = first_pass(ua, method=method, purpose=purpose)
        eid = event_id(self.key, identity, offset)
        return Event(OPEN, ref.pixel_id, 0, stamp, "", ip, ua, eid, machine, method, purpose)

    def _enqueue(self, events: list[Event]) -> list[bool]:
        """Through the API's dedupe script, one call per partition; raises on a Redis error."""
        by_partition: dict[int, list[int]] = {}
        for i, event in enumerate(events):
            by_partition.setdefault(self.scheme.partition(event), []).append(i)
        answers = [False] * len(events)
        for partition, indexes in by_partition.items():
            batch = [events[i] for i in indexes]
            keys = [self.scheme.stream(partition), *(self.scheme.dedupe(e, partition) for e in batch)]
            joined = RECORD_SEP.join(e.encode() for e in batch)
            replies = self.script(keys=keys, args=[self.rules.window_seconds, joined])
            for i, reply in zip(indexes, replies, strict=True):
                answers[i] = bool(reply)
        return answers

    def step(self) -> int:
        """Ship one batch (or retire a file); the number of lines read, 0 when idle."""
        self._follow()
        if self._retire():
            return 0
        for tail in self.tails:
            if tail.identity is None or tail.offset >= tail.size():
                continue
            lines, end = self._read(tail)
            if not lines:
                continue
            results = [self._event(tail.identity, offset, line) for offset, line in lines]
            events = [r for r in results if isinstance(r, Event)]
            answers = self._enqueue(events) if events else []  # raises: nothing committed
            counts = dict.fromkeys(RESULTS, 0)
            for result in results:
                if isinstance(result, str):
                    counts[result] += 1
            for event, recorded in zip(events, answers, strict=True):
                counts["recorded" if recorded else "deduplicated"] += 1
                metrics.tracking_request(OPEN, event.machine, recorded)
            tail.offset = end
            self.totals.lines += len(lines)
            for result, n in counts.items():
                setattr(self.totals, result, getattr(self.totals, result) + n)
                if n:
                    LINES.labels(result).inc(n)
            self._commit()
            return len(lines)
        return 0

    def run(self, *, until_idle: bool = False) -> Totals:
        """Ship until stopped (SIGTERM: the batch in progress is finished and committed first);
        `until_idle`: until there is nothing left to read (tests, benchmarks)."""
        while not self.stopping.is_set():
            try:
                read = self.step()
            except Exception as exc:  # noqa: BLE001 - Redis down or slow: retry the same batch
                self._backoff = min(MAX_BACKOFF, max(0.1, self._backoff * 2))
                log.error("could not enqueue (%s): retrying in %.1f s", exc.__class__.__name__, self._backoff)
                metrics.DEPENDENCY_ERRORS.labels("redis", "ship").inc()
                self.stopping.wait(self._backoff)
                continue
            self._backoff = 0.0
            if read == 0:
                if until_idle and not any(t.rotated for t in self.tails):
                    break
                self.stopping.wait(self.poll_interval)
        return self.totals

    def stop(self, *_args: object) -> None:
        self.stopping.set()

    def close(self) -> None:
        for tail in self.tails:
            tail.handle.close()
        self.tails = []
