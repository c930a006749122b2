"""Money is integer minor units inside and a decimal string at the edges; never a float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from crm.domain.errors import ValidationFailed

# ISO 4217 exponents that are not 2; every other currency has two decimals.
_EXPONENT = {
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}


def exponent(currency: str) -> int:
    return _EXPONENT.get(currency.upper(), 2)


def to_minor(amount: str | int | Decimal, currency: str, *, field: str = "amount") -> int:
    """`"199.00"` in CNY -> 19900. Refuses floats, more decimals than the currency has, NaN."""
    if isinstance(amount, (bool, float)):
        raise ValidationFailed(
            f"{field} must be a decimal string", details=[{"field": field, "issue": "wrong_type"}]
        )
    text = str(amount).strip()
    try:
        if not text.isascii():  # Decimal() reads Arabic-Indic and full-width digits
            raise InvalidOperation(text)
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValidationFailed(
            f"{field} is not a decimal amount",
            details=[{"field": field, "issue": "invalid_amount"}],
        ) from exc
    if not value.is_finite():
        raise ValidationFailed(
            f"{field} is not a decimal amount",
            details=[{"field": field, "issue": "invalid_amount"}],
        )
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValidationFailed(
            f"{field} has more decimals than {currency} allows",
            details=[{"field": field, "issue": "too_many_decimals"}],
        )
    return int(scaled)


def to_decimal_string(minor: int, currency: str) -> str:
    exp = exponent(currency)
    value = Decimal(minor).scaleb(-exp)
    return f"{value:.{exp}f}"


def money(minor: int, currency: str) -> dict[str, str]:
    return {"amount": to_decimal_string(minor, currency), "currency": currency.upper()}
