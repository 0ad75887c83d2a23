"""API keys of the caller (keys are personal: an administrator sees and revokes only their own)."""

from __future__ import annotations

from fastapi import Request, Response

from app.authn import Authenticator
from app.deps import CurrentUser, IdPath, PageDep, ReadSessionDep, SessionDep
from app.routing import PrefixRouter, TransactionRoute, after_commit
from app.schemas.apikey import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from app.schemas.common import Page, error_responses, page_of
from app.services import apikeys

router = PrefixRouter(
    prefix="/api/v1/api-keys",
    tags=["api keys"],
    responses=error_responses(401, 403, 422, 429),
    route_class=TransactionRoute,
)


@router.post("", response_model=ApiKeyCreated, status_code=201, summary="Create an API key")
def create_api_key(body: ApiKeyCreate, user: CurrentUser, db: SessionDep) -> ApiKeyCreated:
    """A new key for unattended tools, acting as you (same campaigns, same rate limit).

    The answer holds the key itself (`key`, `pt_…`): it is shown this once and stored only as a
    hash. Send it as `Authorization: Bearer pt_…` on any authenticated route. `expires_at`, if
    given, must be in the future; after it the key answers 401."""
    row, key = apikeys.create_key(db, user, body.name, body.expires_at)
    return ApiKeyCreated.model_validate({**ApiKeyOut.model_validate(row).model_dump(), "key": key})


@router.get("", response_model=Page[ApiKeyOut], summary="List your API keys")
def list_api_keys(user: CurrentUser, db: ReadSessionDep, page: PageDep) -> Page[ApiKeyOut]:
    """Your keys (name, prefix, created, last used, expiry); never a key or its hash."""
    items, total = apikeys.list_keys(db, user, limit=page.limit, offset=page.offset)
    return page_of(ApiKeyOut, items, total, limit=page.limit, offset=page.offset)


@router.delete("/{api_key_id}", status_code=204, responses=error_responses(404), summary="Revoke an API key")
def revoke_api_key(api_key_id: IdPath, user: CurrentUser, db: SessionDep, request: Request) -> Response:
    """Delete one of your keys: the next request that sends it answers 401 (in every API process
    at once with Redis; within a few seconds without it, docs/api.md)."""
    apikeys.revoke_key(db, apikeys.get_key(db, user, api_key_id))
    auth: Authenticator = request.app.state.auth
    after_commit(request, lambda: auth.key_revoked(api_key_id))
    return Response(status_code=204)
