"""/docs and /redoc work without internet: every asset they load is served by the app itself."""

from __future__ import annotations

import re
from typing import Any

import pytest

# Whatever a page loads: src=/href= attributes, ReDoc's spec-url, Swagger UI's `url:` and CSS url(...).
_REFERENCES = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*'([^']+)'|url\(([^)]+)\)""")


def references(html: str) -> list[str]:
    return [next(group for group in match.groups() if group) for match in _REFERENCES.finditer(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(client: Any, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "://" not in html, "the page names an external host"
    assets = references(html)
    assert "/openapi.json" in assets
    assert any(asset.endswith(".js") for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/"), asset
        assert not asset.startswith("//"), asset
        loaded = client.get(asset)
        assert loaded.status_code == 200, asset
        assert loaded.content, asset


def test_swagger_ui_assets_are_the_real_bundles(client: Any) -> None:
    js = client.get("/static-offline-docs/swagger-ui-bundle.js")
    assert "javascript" in js.headers["content-type"]
    assert "SwaggerUIBundle" in js.text
    assert "text/css" in client.get("/static-offline-docs/swagger-ui.css").headers["content-type"]
    redoc = client.get("/static-offline-docs/redoc.standalone.js")
    assert "javascript" in redoc.headers["content-type"]
    assert "Redoc" in redoc.text


def test_swagger_ui_has_no_external_validator_and_oauth2_redirect_works(client: Any) -> None:
    html = client.get("/docs").text
    assert '"validatorUrl": null' in html
    assert "/docs/oauth2-redirect" in html
    redirect = client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "://" not in redirect.text
