"""Transactional message templates, locales and the channel rule (pure)."""

from __future__ import annotations

import re

import pytest

from crm.domain.errors import ValidationFailed
from crm.domain.messages import (
    CASE_REASONS,
    KINDS,
    LOCALES,
    TEMPLATES_DIR,
    channel_for,
    locale_for,
    render,
)

CONTEXTS = {
    "order_confirmed": {
        "order_name": "#1001",
        "total": "309.00 CNY",
        "lines": [{"title": "Jasmine tea", "quantity": 2}, {"title": "Teapot", "quantity": 1}],
    },
    "order_shipped": {"order_name": "#1001", "carrier": "SF Express", "tracking_number": "SF12"},
    "order_delivered": {"order_name": "#1001"},
    "refund_issued": {"order_name": "#1001", "amount": "99.00 CNY"},
    "case_opened": {"order_name": "#1001", "reason": "out_of_stock"},
}
HAN = re.compile(r"[\u4e00-\u9fff]")


def test_every_kind_has_every_template_file_in_every_locale():
    for locale in LOCALES:
        for kind in KINDS:
            for part in ("subject", "body", "sms"):
                assert (TEMPLATES_DIR / locale / f"{kind}.{part}.j2").is_file(), (locale, kind)
    assert set(CONTEXTS) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_renders_in_chinese_and_english(kind):
    zh = render(kind, "zh-CN", CONTEXTS[kind])
    en = render(kind, "en", CONTEXTS[kind])

    for text in (zh.subject, zh.body, zh.sms):
        assert HAN.search(text), text
        assert "#1001" in text
    for text in (en.subject, en.body, en.sms):
        assert not HAN.search(text), text
        assert "#1001" in text
    for rendered in (zh, en):
        assert "\n" not in rendered.subject and "\n" not in rendered.sms
        assert len(rendered.sms) <= 140
        assert "{{" not in rendered.body and "{%" not in rendered.body


def test_the_context_values_are_in_the_text():
    en = render("order_confirmed", "en", CONTEXTS["order_confirmed"])
    assert "309.00 CNY" in en.body and "309.00 CNY" in en.sms
    assert "- Jasmine tea x 2" in en.body and "- Teapot x 1" in en.body
    zh = render("order_shipped", "zh-CN", CONTEXTS["order_shipped"])
    assert "SF Express" in zh.body and "SF12" in zh.sms


def test_text_is_not_html_escaped():
    context = {**CONTEXTS["order_confirmed"], "lines": [{"title": "Tea & <Cups>", "quantity": 1}]}
    assert "Tea & <Cups>" in render("order_confirmed", "en", context).body


@pytest.mark.parametrize("reason", CASE_REASONS)
def test_every_case_reason_has_its_own_words(reason):
    zh = render("case_opened", "zh-CN", {"order_name": "#1", "reason": reason})
    en = render("case_opened", "en", {"order_name": "#1", "reason": reason})
    assert reason not in zh.body and reason not in en.body


def test_an_unknown_case_reason_is_refused():
    with pytest.raises(ValidationFailed) as caught:
        render("case_opened", "en", {"order_name": "#1", "reason": "bored"})
    assert caught.value.details == [{"field": "context.reason", "issue": "unknown_value"}]


@pytest.mark.parametrize(
    ("kind", "context", "field"),
    [
        ("order_shipped", {"order_name": "#1", "carrier": "SF"}, "context.tracking_number"),
        ("refund_issued", {"order_name": "#1", "amount": ""}, "context.amount"),
        ("order_delivered", {}, "context.order_name"),
        ("order_confirmed", {"order_name": "#1", "total": "1.00 CNY"}, "context.lines"),
    ],
)
def test_a_missing_context_value_is_refused(kind, context, field):
    with pytest.raises(ValidationFailed) as caught:
        render(kind, "en", context)
    assert {"field": field, "issue": "missing"} in caught.value.details


def test_malformed_lines_are_refused():
    context = {"order_name": "#1", "total": "1.00 CNY", "lines": [{"title": "no quantity"}]}
    with pytest.raises(ValidationFailed) as caught:
        render("order_confirmed", "zh-CN", context)
    assert caught.value.details == [{"field": "context.lines", "issue": "wrong_type"}]


def test_an_unknown_kind_or_locale_is_refused():
    with pytest.raises(ValidationFailed):
        render("order_lost", "en", {"order_name": "#1"})
    with pytest.raises(ValidationFailed):
        render("order_delivered", "fr", {"order_name": "#1"})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("zh-CN", "zh-CN"),
        ("zh_TW", "zh-CN"),
        ("ZH", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("en", "en"),
        ("en-US", "en"),
        ("EN_gb", "en"),
        ("fr-FR", "DEFAULT"),
        ("", "DEFAULT"),
        (None, "DEFAULT"),
    ],
)
def test_locale_for(given, expected):
    assert locale_for(given, "DEFAULT") == expected


def _consents(email=None, sms=None):
    consents = {}
    for channel, granted in (("email", email), ("sms", sms)):
        if granted is not None:
            consents[channel] = {"granted": granted, "at": "2025-01-01T00:00:00+00:00"}
    return consents


@pytest.mark.parametrize(
    ("email", "phone", "consents", "expected"),
    [
        # No consent recorded: a transactional message still goes, by email first.
        ("a@example.com", "+8613800138000", {}, ("email", None)),
        ("a@example.com", None, None, ("email", None)),
        ("a@example.com", None, _consents(email=True), ("email", None)),
        # An explicit email opt-out moves it to SMS, unless SMS is opted out too.
        ("a@example.com", "+8613800138000", _consents(email=False), ("sms", "email_opted_out")),
        ("a@example.com", "+8613800138000", _consents(False, False), (None, "opted_out")),
        ("a@example.com", None, _consents(email=False), (None, "opted_out")),
        # No email: SMS, unless opted out.
        (None, "+8613800138000", {}, ("sms", "no_email")),
        (None, "+8613800138000", _consents(sms=False), (None, "opted_out")),
        # An SMS opt-out does not stop an email.
        ("a@example.com", "+8613800138000", _consents(sms=False), ("email", None)),
        (None, None, {}, (None, "no_contact")),
        (None, None, _consents(True, True), (None, "no_contact")),
        # The input shape (`{"email": false}`) is understood too.
        ("a@example.com", "+8613800138000", {"email": False}, ("sms", "email_opted_out")),
    ],
)
def test_channel_for(email, phone, consents, expected):
    assert channel_for(email, phone, consents) == expected
