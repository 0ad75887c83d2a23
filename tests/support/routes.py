"""The one table of the API's routes, for the tests that call every route.

Each entry is one call the owner of a full tree (tests/factories.make_tree) can make with
success: method, path template, JSON body (None: no body; a `"{kind}"` string in it stands for
that id: `body_for`) and the owner's status. A route may
have several calls (a list body, a query string). Placeholders name the object kind
(`{campaign}`, `{user}`...) and are filled from a tree's ids; the app's own templates say
`{campaign_id}`. tests/test_route_table.py checks the table against the app's routes: every
route appears, no entry is stale.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from fastapi import FastAPI

API_PREFIX = "/api/v1/"
OWNED_KINDS = frozenset({"campaign", "group", "contact", "pixel", "opening", "link"})
# Objects a user owns directly, outside the campaign tree (not in factories.make_tree): their
# tenant isolation is tested route by route in their own tests (tests/test_webhooks.py).
USER_KINDS = frozenset({"webhook"})


class ApiCall(NamedTuple):
    method: str
    path: str
    body: Any
    status: int
    paged: bool = False  # a list that takes limit/offset

    @property
    def template(self) -> str:
        """The path without its query string."""
        return self.path.split("?")[0]

    @property
    def kinds(self) -> set[str]:
        """The object kinds whose ids the path takes."""
        return set(re.findall(r"{(\w+)}", self.template))

    @property
    def admin_only(self) -> bool:
        return self.template.startswith(API_PREFIX + "users")

    def body_for(self, ids: dict[str, int]) -> Any:
        """The JSON body with each `"{kind}"` string in it replaced by that kind's id."""
        return _fill(self.body, ids)


def _fill(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, str):
        match = re.fullmatch(r"{(\w+)}", value)
        return ids[match.group(1)] if match else value
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


API_CALLS: list[ApiCall] = [
    # Users (admins only).
    ApiCall("GET", "/api/v1/users", None, 200, paged=True),
    ApiCall("POST", "/api/v1/users", {"username": "new_user", "password": "a-long-enough-password"}, 201),
    ApiCall("GET", "/api/v1/users/{user}", None, 200),
    ApiCall("PATCH", "/api/v1/users/{user}", {"email": "x@example.com"}, 200),
    ApiCall("DELETE", "/api/v1/users/{user}", None, 204),
    # API keys (the caller's own; `{api_key}` is a key of the caller, not part of a tree).
    ApiCall("GET", "/api/v1/api-keys", None, 200, paged=True),
    ApiCall("POST", "/api/v1/api-keys", {"name": "campaign tool"}, 201),
    ApiCall("DELETE", "/api/v1/api-keys/{api_key}", None, 204),
    # Campaigns.
    ApiCall("GET", "/api/v1/campaigns", None, 200, paged=True),
    ApiCall("POST", "/api/v1/campaigns", {"name": "New campaign"}, 201),
    ApiCall("GET", "/api/v1/campaigns/{campaign}", None, 200),
    ApiCall("PATCH", "/api/v1/campaigns/{campaign}", {"name": "Renamed"}, 200),
    ApiCall("DELETE", "/api/v1/campaigns/{campaign}", None, 204),
    ApiCall("GET", "/api/v1/campaigns/{campaign}/groups", None, 200, paged=True),
    ApiCall("POST", "/api/v1/campaigns/{campaign}/groups", {"name": "Arm B"}, 201),
    ApiCall("GET", "/api/v1/campaigns/{campaign}/links", None, 200, paged=True),
    ApiCall("POST", "/api/v1/campaigns/{campaign}/links", {"url": "https://example.com/new"}, 201),
    # Reports.
    ApiCall("GET", "/api/v1/campaigns/{campaign}/stats", None, 200),
    ApiCall("GET", "/api/v1/campaigns/{campaign}/stats?bucket=day", None, 200),
    ApiCall("GET", "/api/v1/campaigns/{campaign}/openings.csv", None, 200),
    ApiCall("GET", "/api/v1/campaigns/{campaign}/clicks.csv", None, 200),
    ApiCall("GET", "/api/v1/campaigns/{campaign}/conversions.csv", None, 200),
    # Send time (the render creates a link for its new URL; the tree's contact has its pixel already).
    ApiCall(
        "POST", "/api/v1/campaigns/{campaign}/render", {"html": '<p><a href="https://example.com/rendered">x</a>'}, 200
    ),
    ApiCall("GET", "/api/v1/campaigns/{campaign}/sendsheet", None, 200),
    ApiCall("GET", "/api/v1/campaigns/{campaign}/sendsheet?format=ndjson", None, 200),
    # Groups.
    ApiCall("GET", "/api/v1/groups/{group}", None, 200),
    ApiCall("PATCH", "/api/v1/groups/{group}", {"name": "Renamed arm"}, 200),
    ApiCall("DELETE", "/api/v1/groups/{group}", None, 204),
    ApiCall("GET", "/api/v1/groups/{group}/contacts", None, 200, paged=True),
    ApiCall("POST", "/api/v1/groups/{group}/contacts", {"email": "new@example.com"}, 201),
    ApiCall("POST", "/api/v1/groups/{group}/contacts", [{"email": "b1@example.com"}, {"email": "b2@example.com"}], 201),
    ApiCall("PATCH", "/api/v1/groups/{group}/contacts", {"ids": ["{contact}"], "status": "sent"}, 200),
    # Contacts.
    ApiCall("GET", "/api/v1/contacts/{contact}", None, 200),
    ApiCall("PATCH", "/api/v1/contacts/{contact}", {"name": "Renamed contact"}, 200),
    ApiCall("DELETE", "/api/v1/contacts/{contact}", None, 204),
    ApiCall("GET", "/api/v1/contacts/{contact}/pixels", None, 200, paged=True),
    ApiCall("POST", "/api/v1/contacts/{contact}/pixels", None, 201),
    ApiCall("POST", "/api/v1/contacts/{contact}/pixels", {"number": 9}, 201),
    # Pixels.
    ApiCall("GET", "/api/v1/pixels/{pixel}", None, 200),
    ApiCall("PATCH", "/api/v1/pixels/{pixel}", {"number": 2}, 200),
    ApiCall("DELETE", "/api/v1/pixels/{pixel}", None, 204),
    ApiCall("GET", "/api/v1/pixels/{pixel}/openings", None, 200, paged=True),
    ApiCall("POST", "/api/v1/pixels/{pixel}/openings", {"client": "browser", "event_id": "bola-evt"}, 201),
    # Openings.
    ApiCall("GET", "/api/v1/openings/{opening}", None, 200),
    ApiCall("PATCH", "/api/v1/openings/{opening}", {"client": "bot"}, 200),
    ApiCall("DELETE", "/api/v1/openings/{opening}", None, 204),
    # Links.
    ApiCall("GET", "/api/v1/links/{link}", None, 200),
    ApiCall("PATCH", "/api/v1/links/{link}", {"url": "https://attacker.example/phish"}, 200),
    ApiCall("DELETE", "/api/v1/links/{link}", None, 204),
    ApiCall("GET", "/api/v1/links/{link}/url?contact_id={contact}", None, 200),
    # Webhooks and the event feed (the user's own; docs/webhooks.md).
    ApiCall("GET", "/api/v1/webhooks", None, 200, paged=True),
    ApiCall("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/pixeltracking"}, 201),
    ApiCall("GET", "/api/v1/webhooks/{webhook}", None, 200),
    ApiCall("PATCH", "/api/v1/webhooks/{webhook}", {"description": "CRM"}, 200),
    ApiCall("DELETE", "/api/v1/webhooks/{webhook}", None, 204),
    ApiCall("POST", "/api/v1/webhooks/{webhook}/test", None, 200),
    # Paged, but not a parent's list of children one can POST to (tests/bad_input): paged=False.
    ApiCall("GET", "/api/v1/webhooks/{webhook}/deliveries", None, 200),
    ApiCall("POST", "/api/v1/webhooks/{webhook}/replay?since=2026-01-01T00:00:00Z", None, 200),
    ApiCall("GET", "/api/v1/events", None, 200),
    # Conversions from a backend (docs/conversions.md): by contact id, one or a batch.
    ApiCall("POST", "/api/v1/conversions", {"contact_id": "{contact}", "name": "purchase"}, 200),
    ApiCall("POST", "/api/v1/conversions", {"conversions": [{"contact_id": "{contact}", "name": "signup"}]}, 200),
]


def owned_calls() -> list[ApiCall]:
    """The calls that take the id of an object a customer owns (the BOLA surface)."""
    return [call for call in API_CALLS if call.kinds & OWNED_KINDS and not call.admin_only]


def item_paths() -> dict[str, str]:
    """`kind -> /api/v1/<kinds>/{}`: the routes that read one object by id."""
    found = {}
    for call in API_CALLS:
        match = re.fullmatch(r"/api/v1/\w+/\{(\w+)\}", call.path)
        if call.method == "GET" and match:
            found[match.group(1)] = call.path.replace("{" + match.group(1) + "}", "{}")
    return found


def list_paths() -> dict[str, str]:
    """`<kinds> -> path template`: the paged lists."""
    return {call.path.rsplit("/", 1)[1]: call.path for call in API_CALLS if call.method == "GET" and call.paged}


def app_operations(app: FastAPI) -> set[tuple[str, str]]:
    """(method, template) of every API route the app serves, with `{kind}` placeholders.

    Read from the OpenAPI document FastAPI builds from `app.routes` (it flattens included routers;
    every API route is in the schema, tests/test_openapi_contract.py).
    """
    found: set[tuple[str, str]] = set()
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith(API_PREFIX):
            continue
        generic = re.sub(r"{(\w+)_id}", lambda m: "{" + m.group(1) + "}", path)
        found.update((method.upper(), generic) for method in operations if method != "head")
    return found


def routes_matching(pattern: str) -> list[tuple[str, str]]:
    """(method, template) of the table's routes whose template fully matches `pattern`, in table order."""
    found: list[tuple[str, str]] = []
    for call in API_CALLS:
        key = (call.method, call.template)
        if re.fullmatch(pattern, call.template) and key not in found:
            found.append(key)
    return found
