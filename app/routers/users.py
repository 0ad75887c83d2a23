from __future__ import annotations

from fastapi import Request, Response

from app.authn import Authenticator
from app.deps import AdminUser, IdPath, PageDep, ReadSessionDep, SessionDep
from app.routing import PrefixRouter, TransactionRoute, after_commit
from app.schemas.common import Page, error_responses, page_of
from app.schemas.user import UserCreate, UserOut, UserUpdate
from app.services import users


def _forget_credentials(request: Request, user_id: int) -> None:
    """Once committed, the user's cached credentials go (app/authn.py): a changed password, lost
    rights, a deactivation or a deletion apply to the next request, in every API process."""
    auth: Authenticator = request.app.state.auth
    after_commit(request, lambda: auth.user_changed(user_id))


router = PrefixRouter(
    prefix="/api/v1/users",
    tags=["users (admin)"],
    responses=error_responses(401, 403, 422, 429),
    route_class=TransactionRoute,
)


@router.get("", response_model=Page[UserOut])
def list_users(_admin: AdminUser, db: ReadSessionDep, page: PageDep) -> Page[UserOut]:
    items, total = users.list_users(db, limit=page.limit, offset=page.offset)
    return page_of(UserOut, items, total, limit=page.limit, offset=page.offset)


@router.post("", response_model=UserOut, status_code=201, responses=error_responses(409))
def create_user(body: UserCreate, _admin: AdminUser, db: SessionDep) -> UserOut:
    return UserOut.model_validate(users.create_from(db, body))


@router.get("/{user_id}", response_model=UserOut, responses=error_responses(404))
def get_user(user_id: IdPath, _admin: AdminUser, db: SessionDep) -> UserOut:
    return UserOut.model_validate(users.get_user(db, user_id))


@router.patch("/{user_id}", response_model=UserOut, responses=error_responses(404, 409))
def update_user(user_id: IdPath, body: UserUpdate, admin: AdminUser, db: SessionDep, request: Request) -> UserOut:
    user = users.update_user(db, admin, users.get_user(db, user_id), body)
    _forget_credentials(request, user_id)
    return UserOut.model_validate(user)


@router.delete("/{user_id}", status_code=204, responses=error_responses(404, 409))
def delete_user(user_id: IdPath, admin: AdminUser, db: SessionDep, request: Request) -> Response:
    """Delete the user with everything it owns (campaigns, API keys)."""
    users.delete_user(db, admin, users.get_user(db, user_id))
    _forget_credentials(request, user_id)
    return Response(status_code=204)
