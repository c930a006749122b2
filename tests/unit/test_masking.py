"""Personal data never reaches a log line: the masking every log record goes through."""

import io
import json
import logging

from aws_lambda_powertools import Logger

from crm.observability import REDACTED, MaskingFormatter, mask_personal_data, mask_text


def test_emails_and_phone_numbers_in_free_text_are_masked():
    text = mask_text("sent to Ana@Example.com and +86 138 0013 8000 / 13800138000, order 42")
    assert "Ana@Example.com" not in text
    assert "138" not in text
    assert "order 42" in text


def test_personal_keys_are_masked_at_any_depth():
    record = {
        "customer_id": "cus_1",
        "profile": {"first_name": "Ana", "address": {"city": "X"}, "tags": ["vip"]},
        "count": 3,
    }
    masked = mask_personal_data(record)
    assert masked == {
        "customer_id": "cus_1",
        "profile": {"first_name": REDACTED, "address": REDACTED, "tags": ["vip"]},
        "count": 3,
    }


def test_a_careless_log_call_through_the_powertools_logger_leaks_nothing():
    stream = io.StringIO()
    logger = Logger(service="test-masking", logger_formatter=MaskingFormatter(), stream=stream)
    logger.info({"email": "ana@example.com", "last_name": "Li"})
    logger.info(
        "upserted ana@example.com",
        extra={"phone": "+8613800138000", "customer": {"first_name": "Ana"}},
    )
    try:
        raise ValueError("bad phone 138 0013 8000 for ana@example.com")
    except ValueError:
        logger.exception("failed")
    output = stream.getvalue()
    for secret in ("ana@example.com", "8613800138000", "138 0013 8000", "Ana", 'Li"'):
        assert secret not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[1]["phone"] == REDACTED
    assert lines[2]["level"] == "ERROR"
    logging.getLogger("test-masking").handlers.clear()


def test_identifiers_with_long_numbers_stay_readable_but_phones_do_not() -> None:
    from crm.observability import mask_text

    assert mask_text("order ord_shopify_5012345678901 paid") == (
        "order ord_shopify_5012345678901 paid"
    )
    for phone in ("13800138000", "+86 138 0013 8000", "138-0013-8000", "0571 8888 6666"):
        assert mask_text(f"call {phone} now") == "call *** now"
        assert mask_text(f"tel={phone}") == "tel=***"
