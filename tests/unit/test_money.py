import pytest

from crm.domain.errors import ValidationFailed
from crm.domain.money import money, to_decimal_string, to_minor


def test_amounts_are_integer_minor_units_inside_and_decimal_strings_outside():
    assert to_minor("199.00", "CNY") == 19900
    assert to_minor("199", "CNY") == 19900
    assert to_minor("1000", "JPY") == 1000
    assert to_minor("1.234", "KWD") == 1234
    assert to_decimal_string(19900, "CNY") == "199.00"
    assert money(5, "cny") == {"amount": "0.05", "currency": "CNY"}


@pytest.mark.parametrize("amount", [19.9, True, "abc", "NaN", "Infinity", "1.001"])
def test_floats_junk_and_too_many_decimals_are_refused(amount):
    with pytest.raises(ValidationFailed):
        to_minor(amount, "CNY")


@pytest.mark.parametrize("amount", ["\u0661\u0660.00", "\uff11\uff10.00", "1²", "10.0\uff10"])
def test_amounts_in_non_ascii_digits_are_refused(amount):
    # Decimal() reads Arabic-Indic and full-width digits as numbers; an amount is ASCII
    with pytest.raises(ValidationFailed) as refused:
        to_minor(amount, "CNY")
    assert refused.value.details[0]["issue"] == "invalid_amount"
