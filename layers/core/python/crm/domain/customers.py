"""The customer profile: what a profile holds, how input is validated, and how an upsert,
a patch, a merge and an erasure change it. Pure: time and ids are passed in."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from crm.domain.errors import NotFound, ValidationFailed
from crm.domain.identity import (
    MAX_EXTERNAL_IDS,
    IdentityKeys,
    fit_external_ids,
    normalise_email,
    normalise_external_ids,
    normalise_phone,
    too_many_external_ids,
)
from crm.domain.money import money

ACTIVE, MERGED, ERASED = "active", "merged", "erased"
GENDERS = {"female", "male", "non_binary", "other", "unknown"}
_GENDER_ALIASES = {"f": "female", "m": "male", "woman": "female", "man": "male"}
CONSENT_CHANNELS = ("email", "sms")
ADDRESS_FIELDS = ("country_code", "province", "city", "zip", "line1", "line2")
PROFILE_FIELDS = (
    "external_ids",
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "gender",
    "locale",
    "timezone",
    "address",
    "tags",
    "consents",
    "attributes",
)
# What an erasure removes: everything that names, reaches or locates the person.
PERSONAL_FIELDS = ("email", "phone", "first_name", "last_name", "birthday", "address")

MAX_NAME = 100
MAX_TAGS = 50
MAX_TAG = 64
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTES_BYTES = 8 * 1024
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Customer:
    customer_id: str
    created_at: str
    updated_at: str
    status: str = ACTIVE
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    birthday: str | None = None
    gender: str | None = None
    locale: str | None = None
    timezone: str | None = None
    address: dict[str, str] | None = None
    tags: list[str] = field(default_factory=list)
    consents: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    external_ids: dict[str, str] = field(default_factory=dict)
    possible_duplicates: list[str] = field(default_factory=list)
    merged_into: str | None = None
    erased_at: str | None = None
    # orders_count, total_spent (minor units), currency, first_order_at, last_order_at
    stats: dict[str, Any] = field(default_factory=dict)
    # The newest time a platform stamped on what it told us: `{"shopify": <updated_at>,
    # "shopify:consent:email": <consent_updated_at>}`; an older state is not applied over it.
    platform_seen: dict[str, str] = field(default_factory=dict)
    # Written by the segmentation job only: `segments`, `rfm`, `predicted`, `as_of`.
    analytics: dict[str, Any] = field(default_factory=dict)
    version: int | None = None

    def identity_keys(self) -> IdentityKeys:
        return IdentityKeys.of(self.external_ids, self.email, self.phone)


@dataclass(frozen=True)
class ProfileInput:
    """Validated, normalised profile fields; only the fields the caller sent are present.

    In a PATCH a field sent as null is present with the value None, meaning "clear it".

    A platform's own state of the person (Shopify's `customers/update`) names the `platform`
    and its time for the state (`platform_at`) and for each consent (`consent_at`), so that an
    older state arriving later is not applied over a newer one (see `is_stale`).
    """

    fields: dict[str, Any]
    consent_source: str = "api"
    # Webhooks and imports keep the person and leave out external ids past the maximum
    # (counted in `dropped_external_ids`); the API refuses them (422).
    drop_excess_ids: bool = False
    dropped_external_ids: int = 0
    platform: str | None = None
    platform_at: str | None = None
    consent_at: dict[str, str] = field(default_factory=dict)

    def identity_keys(self) -> IdentityKeys:
        return IdentityKeys.of(
            self.fields.get("external_ids"), self.fields.get("email"), self.fields.get("phone")
        )

    def without_identities(self, keys: set[str]) -> ProfileInput:
        """The same input minus the identities in `keys` (they belong to another profile)."""
        fields = dict(self.fields)
        for name in ("email", "phone"):
            if fields.get(name) and f"{name}:{fields[name]}" in keys:
                del fields[name]
        if fields.get("external_ids"):
            fields["external_ids"] = {
                s: v for s, v in fields["external_ids"].items() if f"ext:{s}:{v}" not in keys
            }
        return replace(self, fields=fields)


def _problem(field_name: str, issue: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": field_name, "issue": issue}])


def _text(name: str, value: Any, max_len: int) -> str:
    """Trimmed text; the limit applies to the text as sent, as the published schema says."""
    if not isinstance(value, str):
        raise _problem(name, "wrong_type", f"{name} must be a string")
    text = value.strip()
    if not text or len(value) > max_len:
        raise _problem(name, "invalid_length", f"{name} must be 1 to {max_len} characters")
    return text


def _birthday(value: Any, today: date) -> str:
    if not isinstance(value, str):
        raise _problem("birthday", "wrong_type", "birthday must be a YYYY-MM-DD string")
    text = value.strip()
    try:
        if not _DATE.match(text):
            raise ValueError(text)
        parsed = date.fromisoformat(text)
    except ValueError as exc:
        raise _problem(
            "birthday", "invalid_date", "birthday must be a real YYYY-MM-DD date"
        ) from exc
    if parsed.year < 1900 or parsed > today:
        raise _problem("birthday", "out_of_range", "birthday must be between 1900 and today")
    return text


def _gender(value: Any) -> str:
    if not isinstance(value, str):
        raise _problem("gender", "wrong_type", "gender must be a string")
    text = value.strip().lower()
    text = _GENDER_ALIASES.get(text, text)
    if text not in GENDERS:
        raise _problem(
            "gender", "unknown_value", "gender must be one of " + ", ".join(sorted(GENDERS))
        )
    return text


def _timezone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    text = _text("timezone", value, 64)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _problem("timezone", "unknown_value", "timezone must be an IANA name") from exc
    return text


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _problem("address", "wrong_type", "address must be an object")
    unknown = sorted(set(value) - set(ADDRESS_FIELDS))
    if unknown:
        raise ValidationFailed(
            "address has fields this API does not know",
            details=[{"field": f"address.{k}", "issue": "unknown_field"} for k in unknown],
        )
    result: dict[str, str] = {}
    for key, item in value.items():
        if item is None:
            continue
        result[key] = _text(f"address.{key}", item, 200)
    if "country_code" in result:
        code = result["country_code"].upper()
        if len(code) != 2 or not (code.isascii() and code.isalpha()):
            raise _problem(
                "address.country_code",
                "invalid_country",
                "address.country_code must be an ISO 3166 alpha-2 code",
            )
        result["country_code"] = code
    return result


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _problem("tags", "wrong_type", "tags must be a list of strings")
    if len(value) > MAX_TAGS:
        raise _problem("tags", "too_many", f"at most {MAX_TAGS} tags")
    return list(dict.fromkeys(_text("tags[]", t, MAX_TAG) for t in value))


def _consents(value: Any) -> dict[str, bool]:
    if not isinstance(value, dict):
        raise _problem("consents", "wrong_type", "consents must be an object of channel to bool")
    result: dict[str, bool] = {}
    for channel, granted in value.items():
        if channel not in CONSENT_CHANNELS:
            raise _problem(
                f"consents.{channel}",
                "unknown_value",
                "consent channels are " + ", ".join(CONSENT_CHANNELS),
            )
        if not isinstance(granted, bool):
            raise _problem(f"consents.{channel}", "wrong_type", "a consent must be true or false")
        result[channel] = granted
    return result


def _attributes(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _problem("attributes", "wrong_type", "attributes must be an object")
    if len(value) > MAX_ATTRIBUTES:
        raise _problem("attributes", "too_many", f"at most {MAX_ATTRIBUTES} attributes")
    for key in value:
        if not key or len(key) > 64:
            raise _problem("attributes", "invalid_key", "attribute names are 1 to 64 characters")
    if len(json.dumps(value)) > MAX_ATTRIBUTES_BYTES:
        raise _problem("attributes", "too_large", "attributes are limited to 8 KB")
    _reject_floats(value, "attributes")
    return value


def _reject_floats(value: Any, path: str) -> None:
    # DynamoDB numbers are decimals; a float would be a silent change of value.
    if isinstance(value, float):
        raise _problem(path, "wrong_type", "numbers in attributes must be integers or strings")
    if isinstance(value, dict):
        for k, v in value.items():
            _reject_floats(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            _reject_floats(v, path)


def parse_profile(
    body: Any,
    *,
    default_country: str,
    today: date,
    partial: bool,
    consent_source: str = "api",
    drop_excess_ids: bool = False,
) -> ProfileInput:
    """Validate a request body into a `ProfileInput`; every problem is reported at once.

    `partial=False` (upsert) needs at least one identity and reads null as "not sent";
    `partial=True` (PATCH) reads null as "clear this field". More than `MAX_EXTERNAL_IDS`
    external ids are refused, or with `drop_excess_ids` the first ones are kept.
    """
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the body must be a JSON object", details=[{"field": "", "issue": "wrong_type"}]
        )
    problems: list[dict[str, Any]] = [
        {"field": k, "issue": "unknown_field"} for k in sorted(set(body) - set(PROFILE_FIELDS))
    ]
    parsers = {
        "external_ids": lambda v: normalise_external_ids(v, drop_excess=drop_excess_ids),
        "email": lambda v: normalise_email(_text("email", v, 254)),
        "phone": lambda v: normalise_phone(_text("phone", v, 32), default_country),
        "first_name": lambda v: _text("first_name", v, MAX_NAME),
        "last_name": lambda v: _text("last_name", v, MAX_NAME),
        "birthday": lambda v: _birthday(v, today),
        "gender": _gender,
        "locale": lambda v: _text("locale", v, 35),
        "timezone": _timezone,
        "address": _address,
        "tags": _tags,
        "consents": _consents,
        "attributes": _attributes,
    }
    fields: dict[str, Any] = {}
    for name, parse in parsers.items():
        if name not in body:
            continue
        raw = body[name]
        if raw is None:
            if partial:
                fields[name] = None
            continue
        try:
            fields[name] = parse(raw)
        except ValidationFailed as exc:
            problems.extend(exc.details)
    if "locale" in fields and fields["locale"] and not _LOCALE.match(fields["locale"]):
        problems.append({"field": "locale", "issue": "invalid_locale"})
    if problems:
        raise ValidationFailed("the customer has invalid fields", details=problems)
    sent_ids = body.get("external_ids")
    dropped = 0
    if isinstance(sent_ids, dict) and fields.get("external_ids") is not None:
        dropped = len(sent_ids) - len(fields["external_ids"])
    result = ProfileInput(
        fields=fields,
        consent_source=consent_source,
        drop_excess_ids=drop_excess_ids,
        dropped_external_ids=dropped,
    )
    if not partial and not result.identity_keys():
        raise ValidationFailed(
            "a customer needs at least one identity: external_ids, email or phone",
            details=[{"field": "email|phone|external_ids", "issue": "missing_identity"}],
        )
    return result


def new_customer(customer_id: str, now: str) -> Customer:
    return Customer(customer_id=customer_id, created_at=now, updated_at=now)


def _instant(text: str | None) -> datetime | None:
    """An ISO 8601 time with an offset as an aware datetime; None when it is not one."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _older(candidate: str | None, than: str | None) -> bool:
    """True when `candidate` is strictly before `than` (both known times)."""
    a, b = _instant(candidate), _instant(than)
    return a is not None and b is not None and a < b


def is_stale(customer: Customer, data: ProfileInput) -> bool:
    """True when `data` is a platform's state older than the newest state of that platform
    already applied to `customer` (an equal time is not stale: a retry of the newest state)."""
    if not data.platform or not data.platform_at:
        return False
    return _older(data.platform_at, customer.platform_seen.get(data.platform))


def _consent_key(platform: str, channel: str) -> str:
    return f"{platform}:consent:{channel}"


def _consent_is_older(customer: Customer, data: ProfileInput, channel: str) -> bool:
    """A platform's consent is older than the decision we hold: than the platform's own last
    time for it when the platform set it, else than when another source recorded it."""
    at = data.consent_at.get(channel) or data.platform_at
    current = customer.consents.get(channel)
    if not data.platform or not at or not current:
        return False
    if current.get("source") == data.consent_source:
        held = customer.platform_seen.get(_consent_key(data.platform, channel))
    else:
        held = current.get("at")
    return _older(at, held)


def _latest(current: str | None, candidate: str) -> str:
    return candidate if current is None or _older(current, candidate) else current


def apply_profile(customer: Customer, data: ProfileInput, now: str, *, partial: bool) -> Customer:
    """The customer after `data` is applied. Upsert unions tags and external ids; PATCH
    replaces tags. Attributes merge (a null value removes a key). A consent gets a new
    timestamp and source only when its value changes.

    A platform's state older than one already applied (`is_stale`) changes nothing; a
    platform's consent older than the decision held for that channel is skipped; the newest
    times seen are kept in `platform_seen`."""
    if is_stale(customer, data):
        return replace(customer)
    updated = replace(
        customer,
        tags=list(customer.tags),
        consents=dict(customer.consents),
        attributes=dict(customer.attributes),
        external_ids=dict(customer.external_ids),
        platform_seen=dict(customer.platform_seen),
    )
    if data.platform and data.platform_at:
        seen = updated.platform_seen
        seen[data.platform] = _latest(seen.get(data.platform), data.platform_at)
    for name, value in data.fields.items():
        if name == "external_ids":
            if value is None:
                updated.external_ids = {}
            else:
                updated.external_ids, _ = fit_external_ids(
                    updated.external_ids, value, drop_excess=data.drop_excess_ids
                )
        elif name == "tags":
            if partial or value is None:
                updated.tags = list(value or [])
            else:
                updated.tags = list(dict.fromkeys([*updated.tags, *value]))
        elif name == "consents":
            for channel, granted in (value or {}).items():
                if _consent_is_older(customer, data, channel):
                    continue
                at = data.consent_at.get(channel) or data.platform_at
                if data.platform and at:
                    key = _consent_key(data.platform, channel)
                    updated.platform_seen[key] = _latest(updated.platform_seen.get(key), at)
                current = updated.consents.get(channel)
                if current is None or current.get("granted") != granted:
                    updated.consents[channel] = {
                        "granted": granted,
                        "at": now,
                        "source": data.consent_source,
                    }
        elif name == "attributes":
            if value is None:
                updated.attributes = {}
            else:
                for key, item in value.items():
                    if item is None:
                        updated.attributes.pop(key, None)
                    else:
                        updated.attributes[key] = item
        else:
            setattr(updated, name, value)
    if profile_state(updated) != profile_state(customer):
        updated.updated_at = now
    return updated


def dropped_external_ids(customer: Customer, data: ProfileInput) -> int:
    """How many of the external ids in `data` the profile does not hold after `data` was
    applied in drop mode (left out past the maximum, at parse or when applied)."""
    sent = data.fields.get("external_ids") or {}
    missing = sum(1 for source, value in sent.items() if customer.external_ids.get(source) != value)
    return data.dropped_external_ids + missing


def profile_state(customer: Customer) -> dict[str, Any]:
    """What a change is measured against: everything but bookkeeping."""
    state = {name: getattr(customer, name) for name in (*PROFILE_FIELDS, "possible_duplicates")}
    state["status"] = customer.status
    return state


def merge_into(target: Customer, source: Customer, now: str) -> tuple[Customer, Customer]:
    """`source` folded into `target`: target's values win, source fills the gaps; the
    source becomes a tombstone pointing at the target (no personal data left on it)."""
    merged = replace(
        target,
        tags=list(dict.fromkeys([*target.tags, *source.tags])),
        consents=dict(target.consents),
        attributes={**source.attributes, **target.attributes},
        external_ids={**source.external_ids, **target.external_ids},
        platform_seen={**source.platform_seen, **target.platform_seen},
    )
    for name in (
        "email",
        "phone",
        "first_name",
        "last_name",
        "birthday",
        "gender",
        "locale",
        "timezone",
        "address",
    ):
        if getattr(merged, name) in (None, "", {}):
            setattr(merged, name, getattr(source, name))
    for channel, consent in source.consents.items():
        current = merged.consents.get(channel)
        # The most recent decision of the person stands, whichever profile recorded it.
        if current is None or consent.get("at", "") > current.get("at", ""):
            merged.consents[channel] = consent
    if len(merged.external_ids) > MAX_EXTERNAL_IDS:
        # Every identity of the source moves to the target, so none may be left out.
        raise too_many_external_ids(len(merged.external_ids))
    merged.possible_duplicates = [
        d
        for d in dict.fromkeys([*target.possible_duplicates, *source.possible_duplicates])
        if d not in (target.customer_id, source.customer_id)
    ]
    merged.stats = merge_stats(target.stats, source.stats)
    merged.updated_at = now
    tombstone = Customer(
        customer_id=source.customer_id,
        created_at=source.created_at,
        updated_at=now,
        status=MERGED,
        merged_into=target.customer_id,
        version=source.version,
    )
    return merged, tombstone


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    if not a:
        return dict(b)
    if not b:
        return dict(a)
    firsts = [x for x in (a.get("first_order_at"), b.get("first_order_at")) if x]
    lasts = [x for x in (a.get("last_order_at"), b.get("last_order_at")) if x]
    months = dict(a.get("spend_months") or {})
    for month, value in (b.get("spend_months") or {}).items():
        months[month] = int(months.get(month, 0)) + int(value)
    return {
        "spend_months": months,
        "orders_count": int(a.get("orders_count", 0)) + int(b.get("orders_count", 0)),
        "total_spent": int(a.get("total_spent", 0)) + int(b.get("total_spent", 0)),
        "currency": a.get("currency") or b.get("currency"),
        "first_order_at": min(firsts) if firsts else None,
        "last_order_at": max(lasts) if lasts else None,
    }


def erase(customer: Customer, now: str) -> tuple[Customer, list[str]]:
    """The profile with every personal field removed, and the names of what was erased.

    The id, stats and the fact of erasure stay, so orders and ledger entries still add up."""
    erased_fields = [name for name in PERSONAL_FIELDS if getattr(customer, name)]
    if customer.external_ids:
        erased_fields.append("external_ids")
    if customer.attributes:
        erased_fields.append("attributes")
    cleared = replace(
        customer,
        email=None,
        phone=None,
        first_name=None,
        last_name=None,
        birthday=None,
        address=None,
        external_ids={},
        attributes={},
        tags=[],
        gender=None,
        locale=None,
        timezone=None,
        possible_duplicates=[],
        platform_seen={},
        analytics={},
        status=ERASED,
        erased_at=now,
        updated_at=now,
    )
    return cleared, erased_fields


def profile_view(customer: Customer) -> dict[str, Any]:
    """The profile as the API shows it."""
    view: dict[str, Any] = {
        "customer_id": customer.customer_id,
        "status": customer.status,
        "external_ids": customer.external_ids,
        "email": customer.email,
        "phone": customer.phone,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "birthday": customer.birthday,
        "gender": customer.gender,
        "locale": customer.locale,
        "timezone": customer.timezone,
        "address": customer.address,
        "tags": customer.tags,
        "consents": customer.consents,
        "attributes": customer.attributes,
        "created_at": customer.created_at,
        "updated_at": customer.updated_at,
        "possible_duplicates": customer.possible_duplicates,
    }
    if customer.merged_into:
        view["merged_into"] = customer.merged_into
    if customer.erased_at:
        view["erased_at"] = customer.erased_at
    return view


def stats_view(stats: dict[str, Any], currency: str) -> dict[str, Any]:
    cur = stats.get("currency") or currency
    return {
        "orders_count": int(stats.get("orders_count", 0)),
        "total_spent": money(int(stats.get("total_spent", 0)), cur),
        "first_order_at": stats.get("first_order_at"),
        "last_order_at": stats.get("last_order_at"),
    }


def refuse_if_erased(customer: Customer) -> None:
    """An erased person is gone for every read about them (404 `erased`, decision 58); their
    orders and ledger entries stay, anonymised, for the books."""
    if customer.status == ERASED:
        raise NotFound(
            f"customer {customer.customer_id} was erased",
            code="erased",
            extra={"customer_id": customer.customer_id, "erased_at": customer.erased_at},
        )
