"""The shape of the code base (issue #11): modules about one thing, none over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
MAX_LINES = 400


def test_no_app_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(APP)): n
        for path in APP.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_routers_import_the_tracker_not_a_fastpath_module() -> None:
    imported = set()
    for path in (APP / "routers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert "app.tracking.tracker" in imported
    assert not {name for name in imported if name.rsplit(".", 1)[-1] == "fastpath"}


def test_reports_are_split_into_stats_series_and_export() -> None:
    from app.services import counters, export, series, stats

    assert callable(stats.campaign_stats)
    assert callable(series.campaign_series)
    assert callable(export.export_openings_csv)
    assert callable(export.export_clicks_csv)
    assert callable(counters.add_events)
    assert callable(counters.refresh_contacts)
    assert not (APP / "services" / "reports.py").exists()
    assert not (APP / "services" / "rollups.py").exists()
