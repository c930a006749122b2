"""Who a person is: normalised identities and the keys that make one profile per person.

An identity key is `ext:<source>:<id>`, `email:<normalised email>` or `phone:<E.164>`. Resolution
tries them in that order: an external id is the shop platform's own word, an email is usually
personal, a phone number is the most often shared or recycled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crm.domain.errors import ValidationFailed

# The local part is dot-separated atoms (no leading, trailing or double dot, as RFC 5322 says);
# the published OpenAPI document carries the same pattern.
_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
_SOURCE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_EXTERNAL_ID = 128
# External ids (one per source) a profile may hold. Erasure releases every identity of a
# profile with the profile's own write, and a DynamoDB transaction takes at most 100 items;
# 20 sources is far more than any shop's platforms, and leaves room for email and phone.
MAX_EXTERNAL_IDS = 20


def too_many_external_ids(count: int) -> ValidationFailed:
    return ValidationFailed(
        f"a customer holds at most {MAX_EXTERNAL_IDS} external ids (one per source); "
        f"this would make {count}",
        details=[{"field": "external_ids", "issue": "too_many", "max": MAX_EXTERNAL_IDS}],
    )


def fit_external_ids(
    current: dict[str, str], new: dict[str, str], *, drop_excess: bool
) -> tuple[dict[str, str], list[str]]:
    """`current` updated with `new` (a source's new id replaces its old one), and the sources
    of `new` left out. Past `MAX_EXTERNAL_IDS` sources: `too_many_external_ids`, or with
    `drop_excess` the new sources that do not fit are left out (first come, first kept)."""
    merged = dict(current)
    dropped: list[str] = []
    for source, value in new.items():
        if source in merged or len(merged) < MAX_EXTERNAL_IDS:
            merged[source] = value
        else:
            dropped.append(source)
    if dropped and not drop_excess:
        raise too_many_external_ids(len(merged) + len(dropped))
    return merged, dropped


def normalise_email(raw: str) -> str:
    """Trimmed and lower-cased, then checked; raises `ValidationFailed` for a bad address."""
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email) or ".." in email:
        raise ValidationFailed(
            "email is not a valid address", details=[{"field": "email", "issue": "invalid_email"}]
        )
    return email


def normalise_phone(raw: str, default_country: str) -> str:
    """E.164 (`+8613800138000`); a number without a country code takes `default_country`."""
    import phonenumbers  # loaded on first use: it is the largest import on the profile path

    problem = [{"field": "phone", "issue": "invalid_phone"}]
    text = raw.strip()
    if not text or len(text) > 32:
        raise ValidationFailed("phone is not a valid number", details=problem)
    try:
        number = phonenumbers.parse(text, default_country.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed("phone is not a valid number", details=problem) from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed("phone is not a valid number", details=problem)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_external_ids(raw: object, *, drop_excess: bool = False) -> dict[str, str]:
    """Source -> id, validated; more than `MAX_EXTERNAL_IDS` sources is `too_many`, or with
    `drop_excess` the first `MAX_EXTERNAL_IDS` are kept."""
    if not isinstance(raw, dict):
        raise ValidationFailed(
            "external_ids must be an object of source to id",
            details=[{"field": "external_ids", "issue": "wrong_type"}],
        )
    result: dict[str, str] = {}
    for source, value in raw.items():
        field = f"external_ids.{source}"
        if not isinstance(source, str) or not _SOURCE.match(source):
            raise ValidationFailed(
                "an external id source must be a short lower-case name",
                details=[{"field": field, "issue": "invalid_source"}],
            )
        # Platforms such as Shopify send numeric ids; they are identifiers, kept as text.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationFailed(
                "an external id must be a string", details=[{"field": field, "issue": "wrong_type"}]
            )
        text = str(value).strip()
        if not text or len(text) > MAX_EXTERNAL_ID:
            raise ValidationFailed(
                "an external id must be 1 to 128 characters",
                details=[{"field": field, "issue": "invalid_length"}],
            )
        result[source] = text
    if len(result) > MAX_EXTERNAL_IDS:
        if not drop_excess:
            raise too_many_external_ids(len(result))
        result = dict(list(result.items())[:MAX_EXTERNAL_IDS])
    return result


@dataclass(frozen=True)
class IdentityKeys:
    """The identity keys of one person, in resolution order."""

    external: tuple[str, ...] = ()
    email: str | None = None
    phone: str | None = None

    @classmethod
    def of(
        cls, external_ids: dict[str, str] | None, email: str | None, phone: str | None
    ) -> IdentityKeys:
        return cls(
            external=tuple(f"ext:{s}:{v}" for s, v in sorted((external_ids or {}).items())),
            email=f"email:{email}" if email else None,
            phone=f"phone:{phone}" if phone else None,
        )

    def ordered(self) -> list[str]:
        keys = list(self.external)
        keys += [k for k in (self.email, self.phone) if k]
        return keys

    def __bool__(self) -> bool:
        return bool(self.ordered())
