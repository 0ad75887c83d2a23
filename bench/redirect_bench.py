"""The click redirect's cost with and without attribution (docs/conversions.md, "Attribution").

In-process, no HTTP: `Tracker.click` of one API process (`start_tracking`, embedded queue,
SQLite) called on its event loop for CLICKS distinct contacts of one link, per case:

- `plain`: a link without attribution (the path every click took before; must not get slower);
- `attribution, cached`: a link with attribution, each contact's consent already cached
  (the usual case: a contact clicks, its cache entry serves the next clicks within the TTL);
- `attribution, miss`: the same with the contact cache emptied before every click (a database
  read in a worker thread per click: the worst case).

The cases are interleaved REPEATS times; the median µs per click of each is printed.
Run: `.venv/bin/python -m bench.redirect_bench [DATABASE_URL]` (default: a fresh SQLite file; a
MariaDB URL names an empty database, which it migrates). It also runs against a tree without
the `attribution` argument of Tracker: then only `plain` is measured.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import update

from app.db import make_engine, make_sessionmaker
from app.migrations import upgrade
from app.models import Link
from app.settings import Settings
from app.tracking.runtime import start_tracking
from tests import factories

CLICKS = 3000
REPEATS = 5
UA = [(b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0")]


async def _run(tracker: Any, tokens: list[str], *, miss: bool) -> float:
    contacts = getattr(getattr(tracker, "attribution", None), "contacts", None)
    start = time.perf_counter()
    for token in tokens:
        if miss and contacts is not None:
            contacts._items.clear()
        status, _headers, _body = await tracker.click(token, UA, "192.0.2.1")
        assert status == 302
    return (time.perf_counter() - start) / len(tokens) * 1e6


async def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine)() as db:
        user = factories.make_user(db, username="bench")
        campaign = factories.make_campaign(db, user)
        group = factories.make_group(db, campaign)
        with factories.one_commit(db):
            contacts = [factories.make_contact(db, group).id for _ in range(CLICKS)]
            plain = factories.make_link(db, campaign, "https://shop.example.com/a?utm_source=email").id
            attributed = factories.make_link(db, campaign, "https://shop.example.com/b?utm_source=email").id
        db.execute(update(Link).where(Link.id == attributed).values(attribution=True))
        db.commit()
    settings = Settings(
        _env_file=None,
        database_url=url,
        redis_url=None,
        redis_host=None,
        fernet_key=Fernet.generate_key().decode(),
    )
    runtime = await start_tracking(settings, engine)
    tracker = runtime.tracker
    tokens = {link: [tracker.codec.click_token(link, contact) for contact in contacts] for link in (plain, attributed)}
    attribution = getattr(tracker, "attribution", None)
    cases = {"plain": (plain, False)}
    if attribution is not None:
        attribution.contacts._ttl = 3600.0  # the cached case measures hits, however long a run takes
        cases |= {"attribution, cached": (attributed, False), "attribution, miss": (attributed, True)}
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(REPEATS):
        for name, (link, miss) in cases.items():
            if not miss:
                await _run(tracker, tokens[link], miss=False)  # warm the caches (the miss case empties them)
                await runtime.memory.flush()
            results[name].append(await _run(tracker, tokens[link], miss=miss))
            await runtime.memory.flush()  # (the recorded clicks out of the way, between runs)
    await runtime.close()
    print(f"{engine.dialect.name}, {CLICKS} clicks per run, {REPEATS} runs per case")
    for name, runs in results.items():
        print(f"{name:22} {statistics.median(runs):7.1f} µs/click  (runs: {', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    asyncio.run(main())
