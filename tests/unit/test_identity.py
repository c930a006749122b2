"""Identity normalisation: the rules that decide whether two inputs are one person."""

import pytest

from crm.domain.errors import ValidationFailed
from crm.domain.identity import (
    IdentityKeys,
    normalise_email,
    normalise_external_ids,
    normalise_phone,
)


@pytest.mark.parametrize("raw", [" Ana@Example.COM ", "ana@example.com", "ANA@EXAMPLE.COM\t"])
def test_emails_that_differ_in_case_and_spacing_are_one_address(raw):
    assert normalise_email(raw) == "ana@example.com"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ana",
        "ana@",
        "@example.com",
        "ana@example",
        "a b@c.com",
        "ana@@example.com",
        "ana..x@example.com",
        "ana@-x.com",
        "x" * 250 + "@example.com",
    ],
)
def test_invalid_emails_are_refused_with_the_field_named(raw):
    with pytest.raises(ValidationFailed) as caught:
        normalise_email(raw)
    assert caught.value.details == [{"field": "email", "issue": "invalid_email"}]


@pytest.mark.parametrize(
    "raw",
    [
        "138 0013 8000",
        "+86 138 0013 8000",
        "13800138000",
        "+86-138-0013-8000",
        "0086 138 0013 8000",
    ],
)
def test_chinese_mobile_numbers_written_many_ways_are_one_e164_number(raw):
    assert normalise_phone(raw, "CN") == "+8613800138000"


def test_a_number_without_country_code_takes_the_default_country():
    assert normalise_phone("(415) 555-2671", "US") == "+14155552671"
    assert normalise_phone("+1 415 555 2671", "CN") == "+14155552671"


@pytest.mark.parametrize("raw", ["", "12", "not a phone", "+86 123", "1" * 40, "+999 1234 5678"])
def test_invalid_phones_are_refused(raw):
    with pytest.raises(ValidationFailed) as caught:
        normalise_phone(raw, "CN")
    assert caught.value.details == [{"field": "phone", "issue": "invalid_phone"}]


def test_external_ids_accept_numeric_platform_ids_as_text():
    assert normalise_external_ids({"shopify": 123, "wechat": " o6_bmjrPTlm6 "}) == {
        "shopify": "123",
        "wechat": "o6_bmjrPTlm6",
    }


@pytest.mark.parametrize(
    "raw, issue",
    [
        ({"Shopify": "1"}, "invalid_source"),
        ({"shopify": True}, "wrong_type"),
        ({"shopify": ["1"]}, "wrong_type"),
        ({"shopify": ""}, "invalid_length"),
        ({"shopify": "x" * 129}, "invalid_length"),
    ],
)
def test_bad_external_ids_are_refused(raw, issue):
    with pytest.raises(ValidationFailed) as caught:
        normalise_external_ids(raw)
    assert caught.value.details[0]["issue"] == issue


def test_identity_keys_resolve_external_id_then_email_then_phone():
    keys = IdentityKeys.of({"shopify": "9", "amazon": "A1"}, "ana@example.com", "+8613800138000")
    assert keys.ordered() == [
        "ext:amazon:A1",
        "ext:shopify:9",
        "email:ana@example.com",
        "phone:+8613800138000",
    ]
    assert not IdentityKeys.of({}, None, None)


def test_at_most_the_maximum_of_external_ids_are_taken_or_the_first_ones_are_kept():
    from crm.domain.identity import MAX_EXTERNAL_IDS, fit_external_ids

    ids = {f"s{i}": str(i) for i in range(MAX_EXTERNAL_IDS + 3)}
    with pytest.raises(ValidationFailed) as refused:
        normalise_external_ids(ids)
    assert refused.value.details == [
        {"field": "external_ids", "issue": "too_many", "max": MAX_EXTERNAL_IDS}
    ]
    kept = normalise_external_ids(ids, drop_excess=True)
    assert list(kept) == [f"s{i}" for i in range(MAX_EXTERNAL_IDS)]
    # Added to a full profile: a source it has is replaced, a new one does not fit
    full = {f"s{i}": str(i) for i in range(MAX_EXTERNAL_IDS)}
    assert fit_external_ids(full, {"s0": "new"}, drop_excess=False)[0]["s0"] == "new"
    with pytest.raises(ValidationFailed):
        fit_external_ids(full, {"extra": "1"}, drop_excess=False)
    merged, dropped = fit_external_ids(full, {"extra": "1", "s1": "x"}, drop_excess=True)
    assert dropped == ["extra"] and merged["s1"] == "x" and len(merged) == MAX_EXTERNAL_IDS
