"""The ingest's rules for clicks that a user agent cannot tell: link scanners fetch with browsers'
agents, so their clicks are caught by when they come (issue #12; Mimecast, Proofpoint, Microsoft
Defender Safe Links and Barracuda follow every link of a message as it arrives).

- **After send** (`timing:after-send`): a person-like click (`browser`/`unknown`) within
  `SCANNER_WINDOW_SECONDS` (default 10) of its contact's `sent_at`.
- **Burst** (`timing:burst`): the contact followed every link of its campaign (at least 2) within
  `SCANNER_BURST_SECONDS` (default 5) of each other: every person-like click of that span, stored
  earlier or arriving now, becomes `scanner`, and the counters of those contacts are recomputed.
  (The trap link is not one of "every link", and its clicks are not counted in a span.)
- **Trap link** (`trap:link`): a click on the campaign's hidden trap link (`links.trap`, inserted
  by the render with `trap_link: true`, invisible and out of the tab order: people never see it)
  is a machine's, whatever its agent: `scanner`.

Only clicks classified by the ingest are judged (their reason is a classifier's: not `api:*`,
`event:v2` or empty). Both rules run inside the batch's transaction (app/tracking/ingest.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from app.models import Click, ClientKind, Link
from app.services import counters

if TYPE_CHECKING:
    from app.settings import Settings

AFTER_SEND, BURST, TRAP = "timing:after-send", "timing:burst", "trap:link"
_HUMANLIKE = (ClientKind.browser.value, ClientKind.unknown.value)
_NOT_JUDGED = ("", "event:v2", "api:manual")
SCANNER = ClientKind.scanner.value


@dataclass(frozen=True)
class ClickRules:
    window_s: int = 10  # SCANNER_WINDOW_SECONDS (0: off)
    burst_s: int = 5  # SCANNER_BURST_SECONDS (0: off)

    @classmethod
    def of(cls, settings: Settings) -> ClickRules:
        return cls(window_s=settings.scanner_window_seconds, burst_s=settings.scanner_burst_seconds)


DEFAULT_RULES = ClickRules()  # the settings' defaults (tests, benchmarks)


def _judged(client: str, reason: str) -> bool:
    return client in _HUMANLIKE and reason not in _NOT_JUDGED


def _seconds(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def trap(row: dict[str, Any], on_trap_link: bool) -> None:
    """Mark the click row a scanner's when it followed the campaign's trap link (any class the
    ingest gave it; a click recorded by hand keeps its own)."""
    if on_trap_link and row["reason"] not in _NOT_JUDGED:
        row["client"], row["reason"] = SCANNER, TRAP


def after_send(row: dict[str, Any], sent_at: datetime | None, rules: ClickRules) -> None:
    """Mark the click row a scanner's when it came within the window after its contact's send."""
    if rules.window_s <= 0 or sent_at is None or not _judged(row["client"], row["reason"]):
        return
    if 0 <= _seconds(row["clicked_at"]) - _seconds(sent_at) < rules.window_s:
        row["client"], row["reason"] = SCANNER, AFTER_SEND


def _bursts(clicks: list[tuple[float, int, Any]], links: int, burst_s: int) -> set[Any]:
    """The keys of the clicks (time, link id, key), sorted by time, that lie in a span of at most
    `burst_s` seconds in which all `links` distinct links were followed."""
    found: set[Any] = set()
    start = 0
    for end in range(len(clicks)):
        while clicks[end][0] - clicks[start][0] > burst_s:
            start += 1
        span = clicks[start : end + 1]
        if len({link for _, link, _ in span}) >= links:
            found.update(key for _, _, key in span)
    return found


def burst(conn: Connection, rows: list[dict[str, Any]], rules: ClickRules) -> set[int]:
    """Apply the burst rule to the batch's click rows (changed in place) and to the contacts'
    stored clicks (updated); the ids of the contacts whose stored clicks changed (their counters
    are to be recomputed once the batch is written: `counters.refresh_contacts`)."""
    if rules.burst_s <= 0 or not rows:
        return set()
    campaigns = {row["campaign_id"] for row in rows}
    link_counts = dict(
        conn.execute(
            select(Link.campaign_id, func.count())
            .where(Link.campaign_id.in_(sorted(campaigns)), Link.trap.is_(False))
            .group_by(Link.campaign_id)
        ).all()
    )
    rows = [row for row in rows if link_counts.get(row["campaign_id"], 0) >= 2 and row["reason"] != TRAP]
    if not rows:
        return set()
    times = [_seconds(row["clicked_at"]) for row in rows]
    batch_ids = {row["event_id"] for row in rows}
    stored = conn.execute(
        select(Click.id, Click.contact_id, Click.link_id, Click.clicked_at, Click.client, Click.reason, Click.event_id)
        .where(Click.contact_id.in_(sorted({row["contact_id"] for row in rows})))
        .where(Click.clicked_at >= datetime.fromtimestamp(min(times) - rules.burst_s, UTC))
        .where(Click.clicked_at <= datetime.fromtimestamp(max(times) + rules.burst_s, UTC))
    ).all()
    by_contact: dict[int, list[tuple[float, int, Any]]] = defaultdict(list)
    owner: dict[int, int] = {}
    for i, row in enumerate(rows):
        by_contact[row["contact_id"]].append((times[i], row["link_id"], ("new", i)))
        owner[row["contact_id"]] = row["campaign_id"]
    for click_id, contact_id, link_id, at, client, reason, event_id in stored:
        if event_id not in batch_ids and reason != TRAP:  # (a replayed batch's own rows are already in `rows`)
            by_contact[contact_id].append((_seconds(at), link_id, ("stored", click_id, client, reason)))
    to_update: list[int] = []
    changed: set[int] = set()
    for contact_id, clicks in by_contact.items():
        for key in _bursts(sorted(clicks, key=lambda c: c[0]), link_counts[owner[contact_id]], rules.burst_s):
            if key[0] == "new":
                row = rows[key[1]]
                if _judged(row["client"], row["reason"]):
                    row["client"], row["reason"] = SCANNER, BURST
            elif _judged(key[2], key[3]):
                to_update.append(key[1])
                changed.add(contact_id)
    if to_update:
        conn.execute(update(Click).where(Click.id.in_(sorted(to_update))).values(client=SCANNER, reason=BURST))
    return changed


def refresh(conn: Connection, contact_ids: set[int]) -> None:
    """Recompute the counters of contacts whose stored clicks the burst rule changed."""
    if contact_ids:
        counters.refresh_contacts(conn, sorted(contact_ids))
