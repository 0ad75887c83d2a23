"""docs/walkthrough.md, run as written against a fresh `pixeltrack serve` that loaded the sample."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.models import Campaign, Click, Contact, Opening, Pixel
from tests.support.processes import wait_until
from tests.support.serve import ADMIN_PASSWORD, served_with_sample

pytestmark = pytest.mark.processes  # starts real processes or servers: not in the fast loop

WALKTHROUGH = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.md"


def walkthrough_script(base: str, password: str) -> str:
    """The first two ```sh blocks of the walk-through (the second goes on from the first; the
    third generates a client), with this server's URL and admin password."""
    blocks = re.findall(r"```sh\n(.*?)```", WALKTHROUGH.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 2, "docs/walkthrough.md should have the curl block and the send-time block"
    script = "".join(blocks[:2])
    script, n_base = re.subn(r"^BASE=.*$", f"BASE={base}", script, count=1, flags=re.MULTILINE)
    script, n_password = re.subn(r"^PASSWORD=.*$", f"PASSWORD='{password}'", script, count=1, flags=re.MULTILINE)
    assert (n_base, n_password) == (1, 1), "the walk-through must set BASE= and PASSWORD= on their own lines"
    return script


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_walkthrough_runs_on_a_server_that_loaded_the_sample(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    with served_with_sample(tmp_path, database_url) as base:
        with Session(engine) as db:
            sample_contacts = db.scalar(select(func.count()).select_from(Contact))
        assert sample_contacts, "serve should have loaded sample.json"
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough_script(base, ADMIN_PASSWORD)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        lines = run.stdout.splitlines()
        pixel, load, openings, contacts = (lines[0], lines[1], lines[2], lines[3])
        rendered, marked, bo_load, ana_click, sent = lines[4:]

        with Session(engine) as db:
            campaign = db.scalars(select(Campaign).where(Campaign.name == "Autumn launch")).one()
            ana = db.scalars(
                select(Contact).where(Contact.campaign_id == campaign.id, Contact.email == "ana@example.com")
            ).one()
        assert ana.id > sample_contacts  # the sample took the first ids: nothing assumed an empty database
        created = json.loads(pixel)
        assert (created["contact_id"], created["number"]) == (ana.id, 1)
        assert created["url"].startswith(f"{base}/o/")
        assert load == "200 43"
        assert len(json.loads(openings)["items"]) <= 1  # recorded or still queued
        listed = json.loads(contacts)
        assert [c["email"] for c in listed["items"]] == ["ana@example.com", "bo@example.com"]

        def recorded() -> int:
            with Session(engine) as db:
                return (
                    db.scalar(select(func.count()).select_from(Opening).where(Opening.pixel_id == created["id"])) or 0
                )

        assert wait_until(recorded, "the walk-through's pixel load to be recorded", timeout=10) == 1
        with Session(engine) as db:
            assert db.scalar(select(func.count()).select_from(Pixel).where(Pixel.contact_id == ana.id)) == 1

        # Send time: Ana's render reused her pixel (she still has one, above; tokens differ on each
        # minting); both were marked sent; Bo's load and Ana's click answer.
        ana_line = json.loads(rendered)
        assert ana_line["contact_id"] == ana.id
        assert ana_line["pixel_url"].startswith(f"{base}/o/")
        assert f'<a href="{base}/c/' in ana_line["html"]
        assert ana_line["html"].startswith("<html><body><p>Hi {{ name }}, our <a href=")
        assert json.loads(marked) == {"updated": 2}
        assert bo_load == "200 43"
        assert ana_click == "302 https://shop.example.com/autumn?utm_source=newsletter"
        assert sent == "2"

        def clicked() -> int:
            with Session(engine) as db:
                return db.scalar(select(func.count()).select_from(Click).where(Click.contact_id == ana.id)) or 0

        assert wait_until(clicked, "the walk-through's click to be recorded", timeout=10) == 1
