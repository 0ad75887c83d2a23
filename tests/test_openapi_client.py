"""A client generated from /openapi.json by openapi-python-client, without a generator warning,
runs the walk-through (docs/walkthrough.md) against a fresh `pixeltrack serve`."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.support.processes import wait_until
from tests.support.serve import ADMIN, ADMIN_PASSWORD, served_with_sample

pytestmark = pytest.mark.processes  # starts real processes or servers: not in the fast loop

pytest.importorskip("openapi_python_client", reason="openapi-python-client is not installed (dev dependency)")

CONFIG = Path(__file__).resolve().parents[1] / "docs" / "openapi-python-client.yaml"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "pixel_tracking_client"


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Path]:
    """Where the client goes; its modules are forgotten afterwards."""
    out = tmp_path / "client"
    yield out
    if str(out) in sys.path:
        sys.path.remove(str(out))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def generate(spec: bytes, tmp_path: Path, out: Path) -> str:
    path = tmp_path / "openapi.json"
    path.write_bytes(spec)
    # The generator formats its output with ruff (a post hook): it must find our venv's.
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(path), "--output-path", str(out), "--config", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    return output


def api(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def test_a_generated_client_runs_the_walkthrough(
    tmp_path: Path, database_url: str, engine: Engine, generated: Path
) -> None:
    with served_with_sample(tmp_path, database_url) as base:
        spec = httpx.get(f"{base}/openapi.json", timeout=10).content
        output = generate(spec, tmp_path, generated)
        assert "warning" not in output.lower(), output
        assert "error" not in output.lower(), output
        sys.path.insert(0, str(generated))

        client_module: Any = importlib.import_module(PACKAGE)
        models: Any = importlib.import_module(f"{PACKAGE}.models")
        login: Any = api("auth.login_auth_token_post")
        create_campaign: Any = api("campaigns.create_campaign_api_v1_campaigns_post")
        create_group: Any = api("groups.create_group_api_v1_campaigns_campaign_id_groups_post")
        create_contacts: Any = api("contacts.create_contacts_api_v1_groups_group_id_contacts_post")
        list_contacts: Any = api("contacts.list_contacts_api_v1_groups_group_id_contacts_get")
        create_pixel: Any = api("pixels.create_pixel_api_v1_contacts_contact_id_pixels_post")
        load_pixel: Any = api("tracking_public.pixel_o_token_gif_get")
        list_openings: Any = api("openings.list_openings_api_v1_pixels_pixel_id_openings_get")

        anonymous = client_module.Client(base_url=base, raise_on_unexpected_status=True)
        token = login.sync(
            client=anonymous, body=models.BodyLoginAuthTokenPost(username=ADMIN, password=ADMIN_PASSWORD)
        )
        assert isinstance(token, models.Token), token
        http = client_module.AuthenticatedClient(
            base_url=base, token=token.access_token, raise_on_unexpected_status=True
        )

        campaign = create_campaign.sync(
            client=http,
            body=models.CampaignCreate(
                name="Autumn launch",
                starts_at=datetime(2026, 10, 1, 8, tzinfo=UTC),
                ends_at=datetime(2026, 10, 15, 8, tzinfo=UTC),
            ),
        )
        assert isinstance(campaign, models.CampaignOut), campaign
        assert campaign.created_at.tzinfo is not None  # parsed as a date-time
        group = create_group.sync(
            campaign.id, client=http, body=models.GroupCreate(name="A", description="short subject line")
        )
        assert isinstance(group, models.GroupOut), group
        created = create_contacts.sync(
            group.id,
            client=http,
            body=[
                models.ContactCreate(
                    email="ana@example.com", name="Ana", scheduled_at=datetime(2026, 10, 1, 9, tzinfo=UTC)
                ),
                models.ContactCreate(email="bo@example.com", scheduled_at=datetime(2026, 10, 1, 9, 5, tzinfo=UTC)),
            ],
        )
        assert isinstance(created, models.ContactBulkOut), created
        ana = created.items[0]
        assert ana.email == "ana@example.com"
        assert ana.id > 1  # the sample took the first ids

        pixel = create_pixel.sync(ana.id, client=http)  # no body: the next free number
        assert isinstance(pixel, models.PixelOut), pixel
        assert (pixel.contact_id, pixel.number) == (ana.id, 1)
        token_part = pixel.url.removeprefix(f"{base}/o/").removesuffix(".gif")
        gif = load_pixel.sync_detailed(token_part, client=anonymous)
        assert gif.status_code == 200
        assert gif.parsed.payload.read() == gif.content
        assert len(gif.content) == 43

        def openings() -> Any:
            page = list_openings.sync(pixel.id, client=http)
            return page if page.total == 1 else None

        page = wait_until(openings, "the pixel load to be listed", timeout=10)
        assert page.items[0].pixel_id == pixel.id
        scheduled = list_contacts.sync(
            group.id,
            client=http,
            status=models.ContactStatus.SCHEDULED,
            scheduled_after=datetime(2026, 10, 1, tzinfo=UTC),
            limit=100,
        )
        assert [c.email for c in scheduled.items] == ["ana@example.com", "bo@example.com"]
