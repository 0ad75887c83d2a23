"""What a reported conversion may say, shared by the public intake (POST /e, GET /e.gif) and the
backend API (POST /api/v1/conversions): a name, optionally a value with its currency (a decimal,
never a float; ISO 4217, from pycountry's ISO data) and the client's own id (the order id that
makes a repeated post count once)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Self

import pycountry
from pydantic import AfterValidator, Field, StringConstraints, model_validator

from app.models.conversion import NAME_MAX, ORDER_ID_MAX, VALUE_DIGITS, VALUE_SCALE
from app.schemas.common import InModel

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]*$"
ORDER_ID_PATTERN = r"^[\x21-\x7e]+$"  # printable ASCII, no spaces


@lru_cache(maxsize=1)
def currencies() -> frozenset[str]:
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


def _currency(code: str) -> str:
    code = code.upper()
    if code not in currencies():
        raise ValueError("not an ISO 4217 currency code")
    return code


ConversionName = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
Currency = Annotated[str, StringConstraints(min_length=3, max_length=3), AfterValidator(_currency)]
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=ORDER_ID_MAX, pattern=ORDER_ID_PATTERN)]
Value = Annotated[
    Decimal,
    Field(ge=0, max_digits=VALUE_DIGITS, decimal_places=VALUE_SCALE, allow_inf_nan=False),
]


class ConversionFields(InModel):
    """name, value + currency (both or neither), id."""

    name: ConversionName
    value: Value | None = None
    currency: Currency | None = None
    id: OrderId | None = Field(default=None, description="your own id (an order id): the same id counts once")

    @model_validator(mode="after")
    def _value_has_currency(self) -> Self:
        if (self.value is None) != (self.currency is None):
            raise ValueError("value and currency go together")
        return self
