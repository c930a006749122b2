"""The customer profile rules: validation, upsert and patch semantics, merge and erasure."""

from datetime import date

import pytest

from crm.domain.customers import (
    ERASED,
    MERGED,
    PERSONAL_FIELDS,
    apply_profile,
    erase,
    merge_into,
    new_customer,
    parse_profile,
    profile_state,
)
from crm.domain.errors import ValidationFailed

TODAY = date(2026, 11, 22)
T0, T1 = "2026-11-01T00:00:00.000+00:00", "2026-11-02T00:00:00.000+00:00"


def parse(body, partial=False, source="api"):
    return parse_profile(
        body, default_country="CN", today=TODAY, partial=partial, consent_source=source
    )


def issues(body, partial=False):
    with pytest.raises(ValidationFailed) as caught:
        parse(body, partial)
    return {(d["field"], d["issue"]) for d in caught.value.details}


def test_a_full_profile_is_normalised():
    data = parse(
        {
            "email": " Ana@Example.COM ",
            "phone": "138 0013 8000",
            "first_name": " Ana ",
            "birthday": "1990-02-28",
            "gender": "F",
            "locale": "zh-CN",
            "timezone": "Asia/Shanghai",
            "tags": ["vip", "vip", "wechat"],
            "address": {"country_code": "cn", "province": "浙江", "city": "杭州"},
            "consents": {"email": True, "sms": False},
            "attributes": {"size": "M"},
            "external_ids": {"shopify": 42},
        }
    )
    f = data.fields
    assert f["email"] == "ana@example.com"
    assert f["phone"] == "+8613800138000"
    assert f["first_name"] == "Ana"
    assert f["gender"] == "female"
    assert f["tags"] == ["vip", "wechat"]
    assert f["address"]["country_code"] == "CN"
    assert f["external_ids"] == {"shopify": "42"}


def test_every_problem_is_reported_at_once():
    found = issues(
        {
            "email": "nope",
            "phone": "12",
            "birthday": "1990-02-30",
            "gender": "x",
            "tags": "vip",
            "nickname": "a",
        }
    )
    assert found == {
        ("email", "invalid_email"),
        ("phone", "invalid_phone"),
        ("birthday", "invalid_date"),
        ("gender", "unknown_value"),
        ("tags", "wrong_type"),
        ("nickname", "unknown_field"),
    }


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"email": 5}, ("email", "wrong_type")),
        ({"email": "a@b.co", "first_name": ["Ana"]}, ("first_name", "wrong_type")),
        ({"email": "a@b.co", "birthday": "22/11/1990"}, ("birthday", "invalid_date")),
        ({"email": "a@b.co", "birthday": "2999-01-01"}, ("birthday", "out_of_range")),
        ({"email": "a@b.co", "birthday": 19900101}, ("birthday", "wrong_type")),
        ({"email": "a@b.co", "consents": {"email": "yes"}}, ("consents.email", "wrong_type")),
        ({"email": "a@b.co", "consents": {"fax": True}}, ("consents.fax", "unknown_value")),
        ({"email": "a@b.co", "address": {"street": "x"}}, ("address.street", "unknown_field")),
        (
            {"email": "a@b.co", "address": {"country_code": "CHN"}},
            ("address.country_code", "invalid_country"),
        ),
        ({"email": "a@b.co", "timezone": "Mars/Olympus"}, ("timezone", "unknown_value")),
        ({"email": "a@b.co", "attributes": {"score": 1.5}}, ("attributes.score", "wrong_type")),
        ({"email": "a@b.co", "locale": "zh CN!"}, ("locale", "invalid_locale")),
        ({"first_name": "Ana"}, ("email|phone|external_ids", "missing_identity")),
        ({"email": None, "phone": None}, ("email|phone|external_ids", "missing_identity")),
    ],
)
def test_bad_fields_are_refused_with_the_field_and_the_issue(body, expected):
    assert expected in issues(body)


def test_a_body_that_is_not_an_object_is_refused():
    assert ("", "wrong_type") in issues(["email"])


def test_upsert_unions_tags_and_external_ids_and_overwrites_scalars():
    c = apply_profile(
        new_customer("c1", T0),
        parse(
            {
                "email": "a@b.co",
                "tags": ["a"],
                "external_ids": {"shopify": "1"},
                "first_name": "Ana",
            }
        ),
        T0,
        partial=False,
    )
    c2 = apply_profile(
        c,
        parse(
            {
                "email": "a@b.co",
                "tags": ["b"],
                "first_name": "Anna",
                "external_ids": {"wechat": "w"},
            }
        ),
        T1,
        partial=False,
    )
    assert c2.tags == ["a", "b"]
    assert c2.external_ids == {"shopify": "1", "wechat": "w"}
    assert c2.first_name == "Anna"
    assert c2.updated_at == T1 and c2.created_at == T0


def test_patch_replaces_tags_and_null_clears_a_field():
    c = apply_profile(
        new_customer("c1", T0),
        parse({"email": "a@b.co", "tags": ["a"], "first_name": "Ana"}),
        T0,
        partial=False,
    )
    c2 = apply_profile(
        c, parse({"tags": ["z"], "first_name": None}, partial=True), T1, partial=True
    )
    assert c2.tags == ["z"]
    assert c2.first_name is None


def test_an_upsert_that_changes_nothing_leaves_the_profile_as_it_was():
    c = apply_profile(
        new_customer("c1", T0),
        parse({"email": "a@b.co", "consents": {"email": True}}),
        T0,
        partial=False,
    )
    again = apply_profile(
        c, parse({"email": " A@B.CO", "consents": {"email": True}}), T1, partial=False
    )
    assert profile_state(again) == profile_state(c)
    assert again.updated_at == T0
    assert again.consents["email"]["at"] == T0


def test_a_consent_records_when_and_where_it_changed():
    c = apply_profile(
        new_customer("c1", T0),
        parse({"email": "a@b.co", "consents": {"sms": True}}),
        T0,
        partial=False,
    )
    c2 = apply_profile(
        c,
        parse({"email": "a@b.co", "consents": {"sms": False}}, source="shopify"),
        T1,
        partial=False,
    )
    assert c.consents["sms"] == {"granted": True, "at": T0, "source": "api"}
    assert c2.consents["sms"] == {"granted": False, "at": T1, "source": "shopify"}


def test_identities_owned_by_another_profile_are_left_out_of_an_update():
    data = parse({"email": "a@b.co", "phone": "13800138000", "external_ids": {"shopify": "1"}})
    kept = data.without_identities({"phone:+8613800138000", "ext:shopify:1"})
    assert kept.fields["email"] == "a@b.co"
    assert "phone" not in kept.fields
    assert kept.fields["external_ids"] == {}


def test_merge_keeps_the_target_values_fills_gaps_and_leaves_a_bare_tombstone():
    target = apply_profile(
        new_customer("t", T0), parse({"email": "t@b.co", "tags": ["a"]}), T0, partial=False
    )
    target.stats = {
        "orders_count": 1,
        "total_spent": 1000,
        "currency": "CNY",
        "first_order_at": T0,
        "last_order_at": T0,
    }
    source = apply_profile(
        new_customer("s", T0),
        parse(
            {
                "email": "s@b.co",
                "phone": "13800138000",
                "first_name": "Ana",
                "tags": ["b"],
                "consents": {"email": False},
                "external_ids": {"shopify": "9"},
            }
        ),
        T1,
        partial=False,
    )
    source.stats = {
        "orders_count": 2,
        "total_spent": 500,
        "currency": "CNY",
        "first_order_at": T1,
        "last_order_at": T1,
    }
    merged, tomb = merge_into(target, source, T1)
    assert merged.email == "t@b.co" and merged.phone == "+8613800138000"
    assert merged.first_name == "Ana" and merged.tags == ["a", "b"]
    assert merged.external_ids == {"shopify": "9"}
    assert merged.consents["email"]["granted"] is False
    assert merged.stats["orders_count"] == 3 and merged.stats["total_spent"] == 1500
    assert merged.stats["first_order_at"] == T0 and merged.stats["last_order_at"] == T1
    assert tomb.status == MERGED and tomb.merged_into == "t"
    assert all(getattr(tomb, name) is None for name in PERSONAL_FIELDS)


def test_erasure_removes_every_personal_field_and_says_which():
    c = apply_profile(
        new_customer("c", T0),
        parse(
            {
                "email": "a@b.co",
                "phone": "13800138000",
                "first_name": "Ana",
                "last_name": "Li",
                "birthday": "1990-01-01",
                "address": {"city": "杭州"},
                "external_ids": {"shopify": "1"},
            }
        ),
        T0,
        partial=False,
    )
    cleared, fields = erase(c, T1)
    assert set(fields) >= {
        "email",
        "phone",
        "first_name",
        "last_name",
        "birthday",
        "address",
        "external_ids",
    }
    assert cleared.status == ERASED and cleared.erased_at == T1
    assert all(getattr(cleared, name) is None for name in PERSONAL_FIELDS)
    assert not cleared.identity_keys()


# -- a platform's older state never wins over a newer one ---------------------------------------


def shopify_state(first_name, at, email_consent=None, consent_at=None):
    from dataclasses import replace

    data = parse(
        {"external_ids": {"shopify": "7"}, "first_name": first_name}
        | ({"consents": {"email": email_consent}} if email_consent is not None else {}),
        source="shopify",
    )
    return replace(
        data,
        platform="shopify",
        platform_at=at,
        consent_at={"email": consent_at or at} if email_consent is not None else {},
    )


def test_an_older_platform_state_applied_after_a_newer_one_changes_nothing():
    from crm.domain.customers import is_stale

    newer = shopify_state("Robert", "2026-11-21T02:00:00+00:00", True)
    older = shopify_state("Bob", "2026-11-21T01:00:00+00:00", False)
    c = apply_profile(new_customer("c1", T0), newer, T1, partial=False)
    assert is_stale(c, older) and not is_stale(c, newer)
    after = apply_profile(c, older, T1, partial=False)
    assert after.first_name == "Robert" and after.consents["email"]["granted"] is True
    assert after.platform_seen["shopify"] == "2026-11-21T02:00:00+00:00"
    # In the other order, the newer state wins just the same
    both = apply_profile(
        apply_profile(new_customer("c2", T0), older, T1, partial=False), newer, T1, partial=False
    )
    assert both.first_name == "Robert" and both.consents["email"]["granted"] is True


def test_a_platform_consent_older_than_a_decision_recorded_elsewhere_is_not_applied():
    # Given the person withdrew email consent through another channel at 10:00
    c = apply_profile(
        new_customer("c1", T0),
        parse({"email": "a@b.co", "consents": {"email": False}}, source="sms"),
        "2026-11-21T10:00:00.000+00:00",
        partial=False,
    )
    # When Shopify's newer customer state carries a subscription decided at 09:00
    update = shopify_state(
        "Ana", "2026-11-21T11:00:00+00:00", True, consent_at="2026-11-21T09:00:00+00:00"
    )
    after = apply_profile(c, update, "2026-11-21T11:00:05.000+00:00", partial=False)
    # Then the name is Shopify's, the consent stays withdrawn
    assert after.first_name == "Ana"
    assert after.consents["email"] == c.consents["email"]
    # And a subscription Shopify decided after the withdrawal is applied
    later = shopify_state(
        "Ana", "2026-11-21T12:00:00+00:00", True, consent_at="2026-11-21T11:30:00+00:00"
    )
    final = apply_profile(after, later, "2026-11-21T12:00:05.000+00:00", partial=False)
    assert final.consents["email"]["granted"] is True
    assert final.consents["email"]["source"] == "shopify"


def test_platform_times_are_kept_by_merge_and_dropped_by_erasure():
    a = apply_profile(
        new_customer("a", T0), shopify_state("A", "2026-11-21T01:00:00+00:00"), T0, partial=False
    )
    b = new_customer("b", T0)
    merged, _ = merge_into(b, a, T1)
    assert merged.platform_seen == {"shopify": "2026-11-21T01:00:00+00:00"}
    erased, _ = erase(merged, T1)
    assert erased.platform_seen == {}


def test_a_merge_that_would_hold_more_external_ids_than_the_maximum_is_refused():
    from crm.domain.identity import MAX_EXTERNAL_IDS

    half = MAX_EXTERNAL_IDS // 2 + 1
    a = apply_profile(
        new_customer("a", T0),
        parse({"external_ids": {f"a{i}": "1" for i in range(half)}}),
        T0,
        partial=False,
    )
    b = apply_profile(
        new_customer("b", T0),
        parse({"external_ids": {f"b{i}": "1" for i in range(half)}}),
        T0,
        partial=False,
    )
    with pytest.raises(ValidationFailed) as refused:
        merge_into(a, b, T1)
    assert refused.value.details[0]["issue"] == "too_many"
