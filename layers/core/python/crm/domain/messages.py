"""Transactional messages: what each kind says (templates per locale), which channel carries
it, and why. Pure: no clock, no I/O beyond reading the template files of this package.

Consent. A transactional message (the order a customer placed was confirmed, shipped,
delivered, refunded, or needs a decision) is part of performing the contract the customer
asked for; it is not marketing. Processing needed to perform a contract the person is party
to has its own legal basis (PIPL art. 13, GDPR art. 6(1)(b)), and the rules on commercial
email and SMS that require an opt-in are about advertising, not service notices. So a
customer who never said anything about email or SMS still hears about their order (most
profiles, created from an order, carry no consent at all; requiring an opt-in would silence
their order notices). An explicit opt-out (`granted: false`) is still respected: the
customer told us not to use that channel, ignoring it would make the consent flag meaningless
to them, and an order notice is not worth a complaint. The other channel is used if it is not
opted out too; if none is left the message is skipped and the reason recorded. Marketing
(campaigns) needs an explicit opt-in and is decided elsewhere.

Templates are Jinja2 files under `crm/templates/<locale>/<kind>.{subject,body,sms}.j2`,
rendered in a sandbox with `StrictUndefined` (a missing value is an error, never an empty
string) and without autoescaping (the output is plain text, not HTML). Jinja2 is imported on
first render, not at import: this module is reachable from the API Lambda's cold start.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crm.domain.errors import ValidationFailed

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

EMAIL, SMS = "email", "sms"
LOCALES = ("zh-CN", "en")
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
PARTS = ("subject", "body", "sms")

CASE_REASONS = (
    "out_of_stock",
    "address_not_routable",
    "delivery_failed",
    "customer_cancellation",
    "other",
)

# Each kind and the context keys its templates need.
KINDS: dict[str, tuple[str, ...]] = {
    "order_confirmed": ("order_name", "total", "lines"),
    "order_shipped": ("order_name", "carrier", "tracking_number"),
    "order_delivered": ("order_name",),
    "refund_issued": ("order_name", "amount"),
    "case_opened": ("order_name", "reason"),
}

# Why no channel could carry a message.
NO_CONTACT = "no_contact"  # neither an email nor a phone
OPTED_OUT = "opted_out"  # every channel there is, the customer opted out of
# Why the message went by SMS rather than email.
NO_EMAIL = "no_email"
EMAIL_OPTED_OUT = "email_opted_out"


@dataclass(frozen=True)
class Rendered:
    subject: str  # one line: the email subject
    body: str  # the email's text body
    sms: str  # the short text an SMS carries


def locale_for(customer_locale: str | None, default: str) -> str:
    """The template locale for a profile's `locale`: `zh*` -> `zh-CN`, `en*` -> `en`, anything
    else (or nothing) -> `default`."""
    value = (customer_locale or "").strip().lower()
    if value.startswith("zh"):
        return "zh-CN"
    if value.startswith("en"):
        return "en"
    return default


def _opted_out(consents: dict[str, Any] | None, channel: str) -> bool:
    consent = (consents or {}).get(channel)
    if isinstance(consent, dict):
        return consent.get("granted") is False
    return consent is False  # tolerate the plain `{"email": false}` shape of an input


def channel_for(
    email: str | None, phone: str | None, consents: dict[str, Any] | None
) -> tuple[str | None, str | None]:
    """The channel of a transactional message and why.

    Email when there is an email and no explicit email opt-out; else SMS when there is a phone
    and no explicit SMS opt-out (reason `no_email` or `email_opted_out`); else `(None, reason)`
    with `no_contact` (no email, no phone) or `opted_out` (each contact there is was opted
    out). `(EMAIL, None)` is the plain case."""
    if email and not _opted_out(consents, EMAIL):
        return EMAIL, None
    if phone and not _opted_out(consents, SMS):
        return SMS, EMAIL_OPTED_OUT if email else NO_EMAIL
    if not email and not phone:
        return None, NO_CONTACT
    return None, OPTED_OUT


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES_DIR), encoding="utf-8"),
        undefined=StrictUndefined,
        autoescape=False,  # plain text: escaping would put `&amp;` in an SMS
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )


def _check_context(kind: str, locale: str, context: Any) -> None:
    if kind not in KINDS:
        raise ValidationFailed(
            f"unknown message kind {kind!r}",
            details=[{"field": "kind", "issue": "unknown_value", "allowed": sorted(KINDS)}],
        )
    if locale not in LOCALES:
        raise ValidationFailed(
            f"unknown locale {locale!r}",
            details=[{"field": "locale", "issue": "unknown_value", "allowed": list(LOCALES)}],
        )
    if not isinstance(context, dict):
        raise ValidationFailed(
            "the message context must be an object",
            details=[{"field": "context", "issue": "wrong_type"}],
        )
    problems = [
        {"field": f"context.{key}", "issue": "missing"}
        for key in KINDS[kind]
        if context.get(key) in (None, "")
    ]
    if kind == "order_confirmed" and "lines" in context:
        lines = context["lines"]
        if not isinstance(lines, list) or not all(
            isinstance(line, dict) and "title" in line and "quantity" in line for line in lines
        ):
            problems.append({"field": "context.lines", "issue": "wrong_type"})
    if kind == "case_opened" and context.get("reason") not in (None, "", *CASE_REASONS):
        problems.append({"field": "context.reason", "issue": "unknown_value"})
    if problems:
        raise ValidationFailed(f"the context of {kind} is incomplete", details=problems)


def render(kind: str, locale: str, context: dict[str, Any]) -> Rendered:
    """The subject, email body and SMS text of `kind` in `locale`. `ValidationFailed` for an
    unknown kind or locale and for a missing or malformed context value."""
    _check_context(kind, locale, context)
    from jinja2 import TemplateError, UndefinedError

    environment = _environment()
    parts: dict[str, str] = {}
    for part in PARTS:
        try:
            text = environment.get_template(f"{locale}/{kind}.{part}.j2").render(context)
        except UndefinedError as exc:
            raise ValidationFailed(
                f"the context of {kind} is incomplete: {exc.message}",
                details=[{"field": "context", "issue": "missing"}],
            ) from exc
        except TemplateError as exc:  # a template of ours is broken: a bug, not bad input
            raise RuntimeError(f"template {locale}/{kind}.{part}.j2 failed: {exc}") from exc
        parts[part] = text.strip()
    subject = " ".join(parts["subject"].split())  # a header is one line
    sms = " ".join(parts["sms"].split())
    return Rendered(subject=subject, body=parts["body"] + "\n", sms=sms)
