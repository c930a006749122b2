import base64
import hashlib
import hmac

import pytest

from crm.domain.errors import Unauthenticated
from crm.domain.signatures import (
    check_generic_header,
    sign_generic,
    sign_shopify,
    verify_generic,
    verify_shopify,
)

BODY = b'{"id": 820982911946154508, "email": "jon@example.com", "total_price": "199.00"}'
CURRENT = "new-secret"
PREVIOUS = "old-secret"
NOW = 1_700_000_000


def refused(message: str):
    return pytest.raises(Unauthenticated, match=message)


# Shopify ------------------------------------------------------------------------------------


def test_sign_shopify_is_base64_of_the_hmac_sha256_of_the_raw_body():
    expected = base64.b64encode(hmac.new(b"s", BODY, hashlib.sha256).digest()).decode()
    assert sign_shopify(BODY, "s") == expected


def test_shopify_accepts_the_current_secret():
    verify_shopify(BODY, sign_shopify(BODY, CURRENT), [CURRENT])  # no exception: accepted


def test_shopify_accepts_surrounding_whitespace_in_the_header():
    verify_shopify(BODY, f"  {sign_shopify(BODY, CURRENT)} ", [CURRENT])


def test_shopify_accepts_the_previous_secret_only_while_it_is_configured():
    header = sign_shopify(BODY, PREVIOUS)
    verify_shopify(BODY, header, [CURRENT, PREVIOUS])
    with refused("does not match"):
        verify_shopify(BODY, header, [CURRENT])


def test_shopify_accepts_the_current_secret_when_listed_second():
    verify_shopify(BODY, sign_shopify(BODY, CURRENT), [PREVIOUS, CURRENT])


def test_shopify_refuses_a_tampered_body():
    header = sign_shopify(BODY, CURRENT)
    with refused("the webhook signature does not match"):
        verify_shopify(BODY.replace(b"199.00", b"1.00"), header, [CURRENT])


def test_shopify_refuses_a_signature_made_with_another_secret():
    with refused("does not match"):
        verify_shopify(BODY, sign_shopify(BODY, "attacker"), [CURRENT, PREVIOUS])


@pytest.mark.parametrize("header", [None, "", "   "])
def test_shopify_refuses_a_missing_header(header):
    with refused("missing X-Shopify-Hmac-Sha256 header"):
        verify_shopify(BODY, header, [CURRENT])


@pytest.mark.parametrize("header", ["not base64!!", "abc", "%%%%", "YWJj\x00"])
def test_shopify_refuses_garbage_base64(header):
    with refused("not valid base64"):
        verify_shopify(BODY, header, [CURRENT])


@pytest.mark.parametrize(
    "header",
    [
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"\x00" * 20).decode(),  # SHA-1 sized
        base64.b64encode(b"\x00" * 64).decode(),
    ],
)
def test_shopify_refuses_a_signature_of_the_wrong_length(header):
    with refused("not an HMAC-SHA256 signature"):
        verify_shopify(BODY, header, [CURRENT])


def test_shopify_refuses_a_hex_signature_instead_of_base64():
    hex_digest = hmac.new(CURRENT.encode(), BODY, hashlib.sha256).hexdigest()
    with pytest.raises(Unauthenticated):
        verify_shopify(BODY, hex_digest, [CURRENT])


@pytest.mark.parametrize("secrets", [[], [""]])
def test_shopify_never_accepts_without_a_secret(secrets):
    with refused("no webhook secret"):
        verify_shopify(BODY, sign_shopify(BODY, ""), secrets)


def test_shopify_refusals_keep_the_unauthenticated_code():
    with pytest.raises(Unauthenticated) as caught:
        verify_shopify(BODY, sign_shopify(BODY, "x"), [CURRENT])
    assert caught.value.code == "unauthenticated"


# Generic ------------------------------------------------------------------------------------


def test_sign_generic_signs_the_timestamp_a_dot_and_the_raw_body():
    mac = hmac.new(b"s", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_generic(BODY, "s", NOW) == f"t={NOW},v1={mac}"


def test_generic_accepts_the_current_secret_and_returns_t():
    assert verify_generic(BODY, sign_generic(BODY, CURRENT, NOW), [CURRENT], now=NOW) == NOW


def test_generic_accepts_the_previous_secret_only_while_it_is_configured():
    header = sign_generic(BODY, PREVIOUS, NOW)
    assert verify_generic(BODY, header, [CURRENT, PREVIOUS], now=NOW) == NOW
    with refused("does not match"):
        verify_generic(BODY, header, [CURRENT], now=NOW)


def test_generic_refuses_a_tampered_body():
    header = sign_generic(BODY, CURRENT, NOW)
    with refused("the webhook signature does not match"):
        verify_generic(BODY + b" ", header, [CURRENT], now=NOW)


def test_generic_refuses_a_changed_timestamp():
    mac = sign_generic(BODY, CURRENT, NOW).split("v1=")[1]
    with refused("does not match"):
        verify_generic(BODY, f"t={NOW + 1},v1={mac}", [CURRENT], now=NOW)


def test_generic_refuses_another_secret():
    with refused("does not match"):
        verify_generic(BODY, sign_generic(BODY, "attacker", NOW), [CURRENT, PREVIOUS], now=NOW)


@pytest.mark.parametrize("offset", [300, -300, 0, 299.5, -299.5])
def test_generic_accepts_a_timestamp_within_the_tolerance(offset):
    # The request was signed at NOW; the server's clock reads NOW + offset.
    assert verify_generic(BODY, sign_generic(BODY, CURRENT, NOW), [CURRENT], NOW + offset) == NOW


@pytest.mark.parametrize("offset", [301, -301, 300.5, -300.5, 86_400])
def test_generic_refuses_a_timestamp_outside_the_tolerance(offset):
    with refused("outside the tolerance"):
        verify_generic(BODY, sign_generic(BODY, CURRENT, NOW), [CURRENT], NOW + offset)


def test_generic_tolerance_is_configurable():
    header = sign_generic(BODY, CURRENT, NOW)
    assert verify_generic(BODY, header, [CURRENT], NOW + 60, tolerance=60) == NOW
    with refused("outside the tolerance of 60 seconds"):
        verify_generic(BODY, header, [CURRENT], NOW + 61, tolerance=60)


def test_generic_tolerates_whitespace_order_and_unknown_keys():
    mac = sign_generic(BODY, CURRENT, NOW).split("v1=")[1]
    header = f" v0=legacy , v1 = {mac.upper()} ,  t = {NOW} ,scheme=hmac, ,"
    assert verify_generic(BODY, header, [CURRENT], now=NOW) == NOW


def test_generic_accepts_any_of_several_v1_entries():
    good = sign_generic(BODY, PREVIOUS, NOW).split("v1=")[1]
    other = sign_generic(BODY, "someone-else", NOW).split("v1=")[1]
    header = f"t={NOW},v1={other},v1=not-hex,v1={good}"
    assert verify_generic(BODY, header, [CURRENT, PREVIOUS], now=NOW) == NOW


def test_generic_signs_the_timestamp_exactly_as_sent():
    mac = hmac.new(CURRENT.encode(), f"0{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert verify_generic(BODY, f"t=0{NOW},v1={mac}", [CURRENT], now=NOW) == NOW


@pytest.mark.parametrize("header", [None, "", "  "])
def test_generic_refuses_a_missing_header(header):
    with refused("missing X-Signature header"):
        verify_generic(BODY, header, [CURRENT], now=NOW)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("v1=only", "no timestamp"),
        ("garbage", "no timestamp"),
        (f"v1={'a' * 64}", "no timestamp"),
        (f"t=abc,v1={'a' * 64}", "not an integer"),
        (f"t=,v1={'a' * 64}", "not an integer"),
        (f"t=-{NOW},v1={'a' * 64}", "not an integer"),
        (f"t={NOW}.5,v1={'a' * 64}", "not an integer"),
        (f"t=1_700_000_000,v1={'a' * 64}", "not an integer"),
        (f"t={NOW},t={NOW},v1={'a' * 64}", "more than one timestamp"),
        (f"t={NOW}", "no v1 signature"),
        (f"t={NOW},v0={'a' * 64}", "no v1 signature"),
        (f"t={NOW},v1=", "no well-formed v1"),
        (f"t={NOW},v1=zz{'a' * 62}", "no well-formed v1"),
        (f"t={NOW},v1={'a' * 40}", "no well-formed v1"),
    ],
)
def test_generic_refuses_malformed_headers(header, message):
    with refused(message):
        verify_generic(BODY, header, [CURRENT], now=NOW)


def test_generic_refuses_t_abc_even_with_the_right_mac_for_that_text():
    mac = hmac.new(CURRENT.encode(), b"abc." + BODY, hashlib.sha256).hexdigest()
    with refused("not an integer"):
        verify_generic(BODY, f"t=abc,v1={mac}", [CURRENT], now=NOW)


@pytest.mark.parametrize("secrets", [[], [""]])
def test_generic_never_accepts_without_a_secret(secrets):
    with refused("no webhook secret"):
        verify_generic(BODY, sign_generic(BODY, "", NOW), secrets, now=NOW)


def test_a_generic_header_no_secret_could_make_valid_is_refused_before_any_secret_is_read():
    # Given headers that are missing, malformed or stale, When checked with no secret at all,
    # Then each is refused; a well-formed, timely one passes whatever secret signed it.
    for header in (None, f"t={NOW}", "v1=" + "0" * 64, f"t=x,v1={'0' * 64}"):
        with pytest.raises(Unauthenticated):
            check_generic_header(header, now=NOW)
    with refused("outside the tolerance"):
        check_generic_header(sign_generic(BODY, "anyone", NOW - 301), now=NOW)
    check_generic_header(sign_generic(BODY, "anyone", NOW - 300), now=NOW)
