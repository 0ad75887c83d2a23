"""`pixeltrack ship`: its command line (kept out of app/cli.py, which is near its size limit).
The work is in app/tracking/ship.py, imported only when the command runs (`pixeltrack --help` stays light)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    ship = sub.add_parser("ship", help="edge mode: move nginx's pixel spool log into the Redis stream")
    ship.add_argument("--log", required=True, help="the spool log nginx writes (deploy/nginx/pixeltrack.conf)")
    ship.add_argument(
        "--state", default=None, help="offsets file, replaced atomically (default: .<log name>.ship next to the log)"
    )
    ship.add_argument("--batch-size", type=int, default=500, help="lines per Redis round trip (default 500)")
    ship.add_argument(
        "--rotated-idle",
        type=float,
        default=5.0,
        help="seconds a rotated file must stay unchanged, read to its end, before it is deleted (default 5)",
    )
    ship.add_argument("--once", action="store_true", help="ship what is there, then exit (benchmarks, catch-up)")
    ship.set_defaults(func=cmd_ship)


def cmd_ship(args: argparse.Namespace) -> int:
    import logging
    import signal

    from app.cli import _settings
    from app.clients import sync_redis
    from app.tracking.partitions import key_scheme
    from app.tracking.ship import Rules, Shipper, event_key
    from app.tracking.tokens import TokenCodec

    settings = _settings()
    if not settings.redis_dsn:
        print("pixeltrack: ship needs Redis (REDIS_URL or REDIS_HOST)", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.worker_metrics_port:
        from prometheus_client import REGISTRY

        from app import metrics_server

        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        metrics_server.start(settings.worker_metrics_host, settings.worker_metrics_port, REGISTRY, token)
    log_path = Path(args.log).absolute()
    state = Path(args.state) if args.state else log_path.with_name(f".{log_path.name}.ship")
    keys = settings.fernet_keys()
    rules = Rules(
        window_seconds=settings.dedupe_window_seconds,
        respect_dnt=settings.respect_dnt,
        anonymize_ip=settings.anonymize_ip,
        disabled=settings.tracking_disabled,
    )
    shipper = Shipper(
        sync_redis(settings.redis_dsn, cluster=settings.redis_cluster),
        TokenCodec(keys),
        event_key(keys[0]),
        log_path,
        state,
        rules=rules,
        scheme=key_scheme(settings),
        batch_size=args.batch_size,
        rotated_idle=args.rotated_idle,
    )
    signal.signal(signal.SIGTERM, shipper.stop)
    signal.signal(signal.SIGINT, shipper.stop)
    print(f"ship: {log_path} -> Redis (state {state})", flush=True)
    try:
        totals = shipper.run(until_idle=args.once)
    finally:
        shipper.close()
    print(
        f"ship: stopped; since the log began: {totals.lines} lines, {totals.recorded} recorded, "
        f"{totals.deduplicated} deduplicated, {totals.invalid_token} invalid tokens dropped, "
        f"{totals.not_recorded} not recorded, {totals.malformed} malformed, {totals.files_deleted} files deleted",
        flush=True,
    )
    return 0
