"""Client-facing messages of the service's errors come from `default_detail`, never a docstring."""

from __future__ import annotations

import pytest

from app import errors


def test_a_subclass_docstring_is_not_shown_to_clients() -> None:
    class MissingWidget(errors.NotFound):
        """Internal note for developers: raised when the widget lookup misses."""

    assert MissingWidget().detail == "Not found."
    assert MissingWidget("No such widget.").detail == "No such widget."


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (errors.NotFound, "Not found."),
        (errors.Conflict, "Conflicts with an existing object."),
        (errors.Unauthorized, "Not authenticated."),
        (errors.Forbidden, "Not allowed."),
        (errors.ValidationFailed, "Invalid input."),
        (errors.RateLimited, "Too many requests."),
    ],
)
def test_each_error_keeps_its_message(error: type[errors.AppError], detail: str) -> None:
    assert error.default_detail == detail
    assert error().detail == detail


def test_the_unused_service_unavailable_error_is_gone() -> None:
    # 503s come from the database/Redis handlers (app/errors.py, app/tracking), not from this class.
    assert not hasattr(errors, "ServiceUnavailable")
