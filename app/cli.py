"""`pixeltrack` command line: serve, worker, dispatcher, ship, migrate, create-admin, load-sample, gen-fernet-key."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from app import ship_command

if TYPE_CHECKING:  # imported lazily below: `pixeltrack --help` must not pay for FastAPI/SQLAlchemy
    from sqlalchemy import Engine

    from app.settings import Settings

# The repository's sample.json, shipped inside the package (app/data/sample.json).
DEFAULT_SAMPLE = Path(str(files("app").joinpath("data", "sample.json")))


def _settings() -> Settings:
    from pydantic import ValidationError

    from app.settings import StartupError, get_settings

    try:
        return get_settings()
    except (StartupError, ValidationError) as exc:
        print(f"pixeltrack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _engine(settings: Settings) -> Engine:
    from app.db import make_engine

    return make_engine(settings.sqlalchemy_url, lean_pool=False, **settings.database_timeouts)


def _migrate(engine: Engine) -> None:
    from app.migrations import upgrade

    upgrade(engine)


def cmd_migrate(_args: argparse.Namespace) -> int:
    settings = _settings()
    engine = _engine(settings)
    _migrate(engine)
    print(f"database migrated: {engine.url.render_as_string(hide_password=True)}")
    return 0


def cmd_gen_fernet_key(_args: argparse.Namespace) -> int:
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    """Checked by the API's own schema (UserCreate): the same rules, human messages, exit 2."""
    from pydantic import ValidationError
    from sqlalchemy.exc import IntegrityError

    from app.db import make_sessionmaker, session_scope
    from app.errors import Conflict
    from app.schemas.user import human_errors
    from app.services.users import create_from, validated_admin

    settings = _settings()
    engine = _engine(settings)
    _migrate(engine)
    password = args.password
    generated = False
    if not password:
        if sys.stdin.isatty():
            password = getpass.getpass(f"password for {args.username}: ")
        else:
            password, generated = secrets.token_urlsafe(16), True
    try:
        data = validated_admin(args.username, args.email, password)
    except ValidationError as exc:
        for line in human_errors(exc, {"username": "--username", "email": "--email", "password": "--password"}):
            print(f"pixeltrack: {line}", file=sys.stderr)
        return 2
    try:
        with session_scope(make_sessionmaker(engine)) as db:
            create_from(db, data)
    except (Conflict, IntegrityError):
        print(f"pixeltrack: a user named '{data.username}' already exists", file=sys.stderr)
        return 1
    print(f"admin '{data.username}' created" + (f" with password: {password}" if generated else ""))
    return 0


def _load_sample_file(engine: Engine, path: Path, owner_name: str | None) -> int:
    from sqlalchemy import select
    from sqlalchemy.exc import IntegrityError

    from app.credentials import normalize_username
    from app.db import make_sessionmaker, session_scope
    from app.errors import AppError
    from app.models import User
    from app.services.sample import load_sample, read_sample

    try:
        sample = read_sample(path)
    except (OSError, ValueError) as exc:
        print(f"pixeltrack: cannot load {path}: {exc}", file=sys.stderr)
        return 1

    def progress(done: int, total: int) -> None:
        print(f"\r  contacts {done}/{total}", end="", file=sys.stderr, flush=True)

    # One transaction: a file rejected half-way is rolled back by session_scope, leaving nothing.
    try:
        with session_scope(make_sessionmaker(engine)) as db:
            stmt = (
                select(User).where(User.username == normalize_username(owner_name))
                if owner_name
                else select(User).where(User.is_admin).order_by(User.id)
            )
            owner = db.scalars(stmt).first()
            if owner is None:
                print("pixeltrack: no owner user; create an admin first (pixeltrack create-admin)", file=sys.stderr)
                return 1
            result = load_sample(db, owner, sample, progress)
    except AppError as exc:
        print(f"\npixeltrack: {path} rejected: {exc.detail}", file=sys.stderr)
        return 1
    except IntegrityError as exc:  # e.g. an event_id already recorded by another campaign
        print(f"\npixeltrack: {path} rejected: conflicts with existing data ({exc.orig})", file=sys.stderr)
        return 1
    print(
        f"\nloaded {path.name} for '{owner.username}': {result.campaigns} campaigns "
        f"({result.skipped} already present), {result.contacts} contacts, {result.pixels} pixels, {result.openings} openings"
    )
    return 0


def cmd_load_sample(args: argparse.Namespace) -> int:
    settings = _settings()
    engine = _engine(settings)
    _migrate(engine)
    return _load_sample_file(engine, Path(args.file), args.owner)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from sqlalchemy import select

    from app.db import make_sessionmaker, session_scope
    from app.models import Campaign
    from app.serve_worker import Stopped, start_child, start_stream_consumer, stop_on_signals, stop_stream_consumer
    from app.services.users import ensure_first_admin

    settings = _settings()
    engine = _engine(settings)
    _migrate(engine)
    with session_scope(make_sessionmaker(engine)) as db:
        first_password = settings.first_admin_password.get_secret_value() if settings.first_admin_password else None
        admin, generated = ensure_first_admin(
            db, username=settings.first_admin_username, password=first_password, email=settings.first_admin_email
        )
        has_campaigns = db.scalar(select(Campaign.id).limit(1)) is not None
    if not args.no_sample and not has_campaigns and DEFAULT_SAMPLE.exists():
        _load_sample_file(engine, DEFAULT_SAMPLE, None)
    engine.dispose()
    host_for_url = "localhost" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
    settings = _point_urls_at_this_server(settings, host_for_url, args.port)
    print("=" * 64)
    print(f"PixelTracking API docs: http://{host_for_url}:{args.port}/docs")
    if generated and admin is not None:
        print(f"Login: username '{admin.username}', password '{generated}'  (shown once; change it)")
    elif settings.first_admin_username:
        print(f"Login: username '{settings.first_admin_username}' with FIRST_ADMIN_PASSWORD")
    else:
        print("Login: the admin created on first start (its password was printed then)")
    print("=" * 64, flush=True)
    _prepare_metrics_dir(args.workers)
    consumer = None if args.no_worker or not settings.redis_dsn else start_stream_consumer(settings)
    dispatcher = None if args.no_dispatcher else start_child("dispatcher", "webhook dispatcher", "--no-dispatcher")
    try:
        with stop_on_signals():
            uvicorn.run(
                "app.main:create_asgi",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                log_level=settings.log_level.lower(),
                proxy_headers=True,
                server_header=False,
                forwarded_allow_ips=settings.forwarded_allow_ips,  # default "": trust no proxy
            )
    except Stopped:
        pass  # SIGTERM/SIGINT: uvicorn has shut down gracefully; stop the consumer too
    finally:
        stop_stream_consumer(consumer)
        stop_stream_consumer(dispatcher)
    return 0


def _point_urls_at_this_server(settings: Settings, host: str, port: int) -> Settings:
    """Pixel and click URLs point at this server unless PUBLIC_BASE_URL says otherwise.

    The app (in this process with one worker, or in each worker process) reads its settings
    through `get_settings()`, cached: drop what was cached before the URL was known.
    """
    if "public_base_url" in settings.model_fields_set:
        return settings
    from app.settings import get_settings

    os.environ["PUBLIC_BASE_URL"] = f"http://{host}:{port}"
    get_settings.cache_clear()
    return _settings()


def _prepare_metrics_dir(workers: int) -> None:
    """Several workers share metrics through PROMETHEUS_MULTIPROC_DIR, emptied at each start."""
    from app.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    directory = os.environ.get(MULTIPROC_ENV)
    if directory is None and workers > 1:
        directory = os.path.join(tempfile.gettempdir(), f"pixeltrack-metrics-{os.getpid()}")
        os.environ[MULTIPROC_ENV] = directory
    if directory:
        prepare_multiprocess_dir(directory)


def cmd_purge(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from app.services.retention import parse_age, purge

    try:
        age = parse_age(args.older_than)
    except ValueError as exc:
        print(f"pixeltrack: --older-than: {exc}", file=sys.stderr)
        return 2
    settings = _settings()
    engine = _engine(settings)
    cutoff = datetime.now(UTC) - age
    verb = "would delete" if args.dry_run else "deleted"

    def progress(table: str, count: int) -> None:
        print(f"\r  {table}: {count} deleted", end="", file=sys.stderr, flush=True)

    done = purge(engine, cutoff, batch_size=args.batch_size, dry_run=args.dry_run, progress=progress)
    print(f"\n{verb} before {cutoff.isoformat(timespec='seconds')}: " + ", ".join(f"{n} {t}" for t, n in done.items()))
    return 0


def cmd_reclassify(args: argparse.Namespace) -> int:
    from app.db import make_sessionmaker
    from app.services.reclassify import Reclassified, reclassify

    if args.batch_size < 1:
        print("pixeltrack: --batch-size must be at least 1", file=sys.stderr)
        return 2

    def progress(table: str, tally: Reclassified) -> None:
        print(f"\r  {table}: {tally.examined} examined, {tally.changed} changed", end="", file=sys.stderr, flush=True)

    sessions = make_sessionmaker(_engine(_settings()))
    done = reclassify(sessions, campaign_id=args.campaign, batch_size=args.batch_size, progress=progress)
    print("\nreclassified: " + ", ".join(f"{t.changed} of {t.examined} {name}" for name, t in done.items()))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from app.clients import sync_redis
    from app.tracking.click_rules import ClickRules
    from app.tracking.partitions import PartitionedWorker, key_scheme, parse_partitions

    settings = _settings()
    keys = key_scheme(settings)
    try:
        partitions = None if args.partitions is None else parse_partitions(args.partitions, keys.partitions)
    except ValueError as exc:
        print(f"pixeltrack: --partitions: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_dsn:
        print(
            "pixeltrack: the worker needs Redis (REDIS_URL or REDIS_HOST); "
            "without Redis the API writes tracking events itself",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.worker_metrics_port:
        from prometheus_client import REGISTRY

        from app import metrics_server

        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        metrics_server.start(settings.worker_metrics_host, settings.worker_metrics_port, REGISTRY, token)
        print(
            f"worker metrics: http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics", flush=True
        )
    worker = PartitionedWorker(
        sync_redis(settings.redis_dsn, cluster=settings.redis_cluster),
        _engine(settings),
        keys=keys,
        partitions=partitions,
        consumer=args.consumer,
        batch_size=args.batch_size or settings.worker_batch_size,
        claim_idle_ms=settings.worker_claim_idle_ms,
        click_rules=ClickRules.of(settings),
        inflight=settings.worker_inflight_batches,
        batch_interval_ms=settings.worker_batch_interval_ms,
    )
    worker.run_forever()
    return 0


def cmd_dispatcher(_args: argparse.Namespace) -> int:
    from app.webhooks.dispatcher import run_command

    return run_command(_settings(), _engine)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixeltrack", description="PixelTracking: self-hosted email open tracking.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="migrate, create the first admin, load sample.json into an empty database, serve"
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    serve.add_argument("--no-sample", action="store_true", help="do not load sample.json into an empty database")
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="with Redis configured, do not start the stream consumer (`pixeltrack worker`) beside the API",
    )
    serve.add_argument(
        "--no-dispatcher", action="store_true", help="do not start `pixeltrack dispatcher` beside the API"
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("dispatcher", help="deliver stored events to the webhooks").set_defaults(func=cmd_dispatcher)

    worker = sub.add_parser("worker", help="move tracking events from the Redis stream into the database")
    worker.add_argument("--consumer", default=None, help="consumer name in the group (default: host-pid)")
    worker.add_argument("--batch-size", type=int, default=None, help="entries per database batch (WORKER_BATCH_SIZE)")
    worker.add_argument(
        "--partitions",
        default=None,
        metavar="LIST",
        help="stream partitions to consume, e.g. 0-7, 3, 0-3,8 (default: all)",
    )
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)").set_defaults(func=cmd_migrate)

    admin = sub.add_parser("create-admin", help="create an admin user")
    admin.add_argument("--username", required=True)
    admin.add_argument("--email", default=None)
    admin.add_argument("--password", default=None, help="default: prompt, or generate and print when not a terminal")
    admin.set_defaults(func=cmd_create_admin)

    sample = sub.add_parser("load-sample", help="load a sample/seed JSON file (idempotent)")
    sample.add_argument("file", nargs="?", default=str(DEFAULT_SAMPLE), help="default: the bundled sample.json")
    sample.add_argument("--owner", default=None, help="username owning the campaigns (default: the first admin)")
    sample.set_defaults(func=cmd_load_sample)

    sub.add_parser("gen-fernet-key", help="print a new FERNET_KEY").set_defaults(func=cmd_gen_fernet_key)

    purge = sub.add_parser("purge", help="delete openings and clicks older than a retention period, in batches")
    purge.add_argument("--older-than", required=True, metavar="AGE", help="e.g. 180d, 12h, 30m, 2w")
    purge.add_argument("--batch-size", type=int, default=5000, help="rows per transaction (default 5000)")
    purge.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    purge.set_defaults(func=cmd_purge)

    again = sub.add_parser("reclassify", help="re-derive the client class of stored openings and clicks, in batches")
    again.add_argument("--campaign", type=int, metavar="ID", help="only this campaign's rows")
    again.add_argument("--batch-size", type=int, default=1000, help="rows per transaction (default 1000)")
    again.set_defaults(func=cmd_reclassify)
    ship_command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
