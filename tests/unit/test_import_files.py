"""Reading drop-folder files: encodings, CSV and JSON Lines rows, customer columns, the error
file, and streaming (memory stays flat as the file grows)."""

import codecs
import csv
import io
import tracemalloc
from collections.abc import Iterator
from datetime import date

import pytest

from crm.domain.errors import ValidationFailed
from crm.domain.import_files import (
    ERROR_CSV_HEADER,
    ErrorReport,
    Row,
    customer_fields,
    customer_row,
    detect_encoding,
    error_csv_header,
    error_csv_line,
    failure_reason,
    format_for,
    iter_text,
    read_rows,
)

TODAY = date(2026, 11, 22)
CHINESE = "external_id,first_name,last_name,city\nshopify:1,张,伟,广州\nshopify:2,李,娜,深圳\n"


def chunked(data: bytes, size: int = 7) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def rows(text: str | bytes, fmt: str = "csv", size: int = 7) -> list[Row]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return list(read_rows(chunked(data, size), fmt))


def issues(exc: pytest.ExceptionInfo[ValidationFailed]) -> set[str]:
    return {d["issue"] for d in exc.value.details}


# --- Encoding ---------------------------------------------------------------------------


def test_detect_utf8_with_bom():
    assert detect_encoding(codecs.BOM_UTF8 + b"a,b\n") == "utf-8-sig"


def test_detect_utf8_without_bom_and_ascii():
    assert detect_encoding("名字,城市\n".encode()) == "utf-8"
    assert detect_encoding(b"email\nx@example.com\n") == "utf-8"
    assert detect_encoding(b"") == "utf-8"


def test_detect_gb18030_and_names_survive():
    data = CHINESE.encode("gb18030")
    assert detect_encoding(data) == "gb18030"
    assert "".join(iter_text(chunked(data, 3), "gb18030")) == CHINESE
    got = rows(data)
    assert [(r.fields or {})["first_name"] for r in got] == ["张", "李"]
    assert (got[0].fields or {})["city"] == "广州"


def test_detect_utf8_sample_cut_mid_character():
    sample = "name\n张伟".encode()[:-1]  # the last character is cut in half
    assert detect_encoding(sample) == "utf-8"


def test_iter_text_rejoins_characters_split_between_chunks():
    data = "名字,城市\n王芳,北京\n".encode()
    assert "".join(iter_text(chunked(data, 1), "utf-8")) == "名字,城市\n王芳,北京\n"


def test_bom_is_not_part_of_the_first_column():
    got = rows(codecs.BOM_UTF8 + b"email,first_name\nA@x.com,Ann\n")
    assert got[0].fields == {"email": "A@x.com", "first_name": "Ann"}


def test_gb18030_after_an_ascii_start_longer_than_the_sample():
    head = "email,first_name\n" + "".join(f"u{i}@example.com,Ann\n" for i in range(5000))
    data = head.encode("ascii") + "z@example.com,张伟\n".encode("gb18030")
    assert len(data) > 64 * 1024
    got = list(read_rows(chunked(data, 4096), "csv"))
    assert len(got) == 5001
    assert got[-1].problem is None
    assert (got[-1].fields or {})["first_name"] == "张伟"


def test_undecodable_bytes_make_a_problem_row():
    data = "email,first_name\na@example.com,José\n".encode() + b"b@example.com,\xff\xfe\n"
    got = rows(data)
    assert got[0].problem is None
    assert got[1].problem == "invalid_encoding"


def test_same_file_as_gb18030_and_utf8_bom_reads_the_same():
    text = CHINESE + 'shopify:3,"王, 小",明,"北京\n朝阳"\n'
    gb = rows(text.encode("gb18030"))
    bom = rows(codecs.BOM_UTF8 + text.encode("utf-8"))
    assert gb == bom
    assert len(gb) == 3


# --- CSV --------------------------------------------------------------------------------


def test_format_for():
    assert format_for("incoming/customers/a.CSV") == "csv"
    assert format_for("b.txt") == "csv"
    assert format_for("incoming/customers/c.jsonl") == "jsonl"
    assert format_for("d.ndjson") == "jsonl"
    for bad in ("e.xlsx", "noext", "incoming/customers.csv/f"):
        with pytest.raises(ValueError):
            format_for(bad)


def test_csv_quoted_newlines_keep_raw_text():
    text = 'email,note\r\na@example.com,"line one\r\nline two"\r\nb@example.com,"say ""hi"""\r\n'
    got = rows(text)
    assert [r.number for r in got] == [1, 2]
    assert got[0].fields == {"email": "a@example.com", "note": "line one\r\nline two"}
    assert got[0].raw == 'a@example.com,"line one\r\nline two"'
    assert got[1].fields == {"email": "b@example.com", "note": 'say "hi"'}
    assert got[1].raw == 'b@example.com,"say ""hi"""'


def test_csv_wrong_column_count_is_a_problem_row():
    got = rows("email,first_name\na@example.com,Ann\nb@example.com\nc@example.com,C,extra\n")
    assert [(r.number, r.problem) for r in got] == [
        (1, None),
        (2, "wrong_column_count"),
        (3, "wrong_column_count"),
    ]
    assert got[1].fields is None
    assert got[1].raw == "b@example.com"


def test_csv_broken_quoting_at_the_end():
    got = rows('email,first_name\na@example.com,Ann\nb@example.com,"Bob\nc@example.com,Cy\n')
    assert got[0].problem is None
    assert got[1].problem == "broken_quoting"
    assert got[1].raw == 'b@example.com,"Bob\nc@example.com,Cy'
    assert len(got) == 2


def test_csv_text_after_a_closing_quote_is_broken_and_reading_goes_on():
    got = rows('email,first_name\na@example.com,"Ann"x\nb@example.com,Bob\n')
    assert [(r.number, r.problem) for r in got] == [(1, "broken_quoting"), (2, None)]


def test_csv_blank_lines_are_skipped():
    got = rows("\n\nemail,first_name\n\na@example.com,Ann\n   \n\r\nb@example.com,Bob")
    assert [(r.number, r.fields) for r in got] == [
        (1, {"email": "a@example.com", "first_name": "Ann"}),
        (2, {"email": "b@example.com", "first_name": "Bob"}),
    ]


def test_csv_header_only_or_empty():
    assert rows("email,first_name\n") == []
    assert rows("") == []


# --- JSON Lines ---------------------------------------------------------------------------


def test_jsonl_good_and_bad_lines():
    text = (
        '{"email": "a@example.com"}\n'
        "\n"
        "{not json}\n"
        "[1, 2]\n"
        '"text"\r\n'
        '{"phone": "13800138000", "tags": ["vip"]}'
    )
    got = rows(text, "jsonl")
    assert [(r.number, r.problem) for r in got] == [
        (1, None),
        (2, "invalid_json"),
        (3, "not_an_object"),
        (4, "not_an_object"),
        (5, None),
    ]
    assert got[0].fields == {"email": "a@example.com"}
    assert got[1].raw == "{not json}"
    assert got[3].raw == '"text"'


def test_jsonl_in_the_api_shape_maps_to_a_profile():
    line = (
        '{"external_ids": {"shopify": 77}, "email": "A@Example.com", "tags": ["vip"],'
        ' "address": {"country_code": "cn", "city": "上海"}, "consents": {"email": true}}\n'
    )
    (row,) = rows(line, "jsonl")
    profile = customer_row(row, "CN", TODAY)
    assert profile.fields["external_ids"] == {"shopify": "77"}
    assert profile.fields["email"] == "a@example.com"
    assert profile.fields["address"] == {"country_code": "CN", "city": "上海"}
    assert profile.fields["consents"] == {"email": True}


# --- Customer columns ---------------------------------------------------------------------

SHOPIFY_NEW = (
    "Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,"
    "Default Address Address1,Default Address Address2,Default Address City,"
    "Default Address Province Code,Default Address Country Code,Default Address Zip,"
    "Default Address Phone,Phone,Accepts SMS Marketing,Total Spent,Total Orders,Note,"
    "Tax Exempt,Tags,Some New Column\n"
    "'7085235396843,Ann,Lee,Ann@Example.com,yes,Acme,1 Main St,Suite 2,Guangzhou,GD,CN,"
    "'510000,'+8613800138001,'+8613800138000,no,123.45,3,\"likes tea, green\",no,"
    '"vip, wholesale",whatever\n'
    "7085235396844,Bo,,,no,,,,,,,,'+8613900139000,,,0.00,0,,no,,\n"
)
SHOPIFY_OLD = (
    "First Name,Last Name,Email,Company,Address1,Address2,City,Province,Province Code,"
    "Country,Country Code,Zip,Phone,Accepts Email Marketing,Total Spent,Total Orders,Tags,"
    "Note,Tax Exempt\n"
    "Ann,Lee,ann@example.com,Acme,1 Main St,,Guangzhou,Guangdong,GD,China,CN,510000,"
    "'+8613800138000,yes,123.45,3,vip,,no\n"
)


def test_shopify_export_new_headers():
    first, second = rows(SHOPIFY_NEW)
    body = customer_fields(first.fields or {})
    assert body == {
        "external_ids": {"shopify": "7085235396843"},
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "Ann@Example.com",
        "phone": "+8613800138000",
        "address": {
            "line1": "1 Main St",
            "line2": "Suite 2",
            "city": "Guangzhou",
            "province": "GD",
            "country_code": "CN",
            "zip": "510000",
        },
        "consents": {"email": True, "sms": False},
        "tags": ["vip", "wholesale"],
        "attributes": {
            "company": "Acme",
            "shopify_total_spent": "123.45",
            "shopify_total_orders": 3,
            "note": "likes tea, green",
            "tax_exempt": False,
        },
    }
    profile = customer_row(first, "CN", TODAY)
    assert profile.fields["email"] == "ann@example.com"
    assert profile.consent_source == "import"
    # No customer phone: the default address phone stands in; empty columns are absent.
    second_body = customer_fields(second.fields or {})
    assert second_body["phone"] == "+8613900139000"
    assert "email" not in second_body and "last_name" not in second_body
    assert customer_row(second, "CN", TODAY).fields["phone"] == "+8613900139000"


def test_shopify_export_old_headers():
    (row,) = rows(SHOPIFY_OLD)
    body = customer_fields(row.fields or {})
    assert body["address"] == {
        "line1": "1 Main St",
        "city": "Guangzhou",
        "province": "GD",
        "country_code": "CN",
        "zip": "510000",
    }
    assert body["phone"] == "+8613800138000"
    assert body["consents"] == {"email": True}
    assert body["attributes"]["company"] == "Acme"
    profile = customer_row(row, "CN", TODAY)
    assert profile.fields["phone"] == "+8613800138000"
    assert profile.fields["tags"] == ["vip"]


def test_project_columns():
    text = (
        "external_id,email,phone,first_name,last_name,birthday,gender,locale,tags,"
        "country_code,province,city,zip,line1,accepts_email,accepts_sms,unknown\n"
        "Shopify:123, A@Example.com ,13800138000,张,伟,1990-05-04,F,zh-CN,a;b,cn,广东,广州,"
        "510000,天河路 1 号,TRUE,0,ignored\n"
    )
    (row,) = rows(text)
    body = customer_fields(row.fields or {})
    assert body["external_ids"] == {"shopify": "123"}
    assert body["tags"] == ["a", "b"]
    assert body["consents"] == {"email": True, "sms": False}
    assert "unknown" not in body
    profile = customer_row(row, "CN", TODAY)
    assert profile.fields == {
        "external_ids": {"shopify": "123"},
        "email": "a@example.com",
        "phone": "+8613800138000",
        "first_name": "张",
        "last_name": "伟",
        "birthday": "1990-05-04",
        "gender": "female",
        "locale": "zh-CN",
        "address": {
            "country_code": "CN",
            "province": "广东",
            "city": "广州",
            "zip": "510000",
            "line1": "天河路 1 号",
        },
        "tags": ["a", "b"],
        "consents": {"email": True, "sms": False},
    }


def test_tags_with_commas():
    assert customer_fields({"email": "a@example.com", "tags": "a, b,,a"})["tags"] == [
        "a",
        "b",
        "a",
    ]
    assert customer_row(
        Row(1, "", {"email": "a@example.com", "tags": "a, b,,a"}), "CN", TODAY
    ).fields["tags"] == ["a", "b"]


@pytest.mark.parametrize(
    ("fields", "issue"),
    [
        ({"email": "not-an-email"}, "invalid_email"),
        ({"phone": "12"}, "invalid_phone"),
        ({"email": "a@example.com", "birthday": "1990-02-30"}, "invalid_date"),
        ({"email": "a@example.com", "birthday": "04/05/1990"}, "invalid_date"),
        ({"first_name": "Ann", "city": "Paris"}, "no_identity"),
        ({"email": "", "phone": "  ", "Customer ID": "'"}, "no_identity"),
        ({"external_id": "123"}, "invalid_external_id"),
        ({"email": "a@example.com", "accepts_email": "maybe"}, "wrong_type"),
    ],
)
def test_bad_rows_are_refused_with_reasons(fields, issue):
    with pytest.raises(ValidationFailed) as exc:
        customer_row(Row(4, "raw", fields), "CN", TODAY)
    assert issue in issues(exc)
    assert issue in failure_reason(exc.value)


def test_all_problems_of_a_row_at_once():
    with pytest.raises(ValidationFailed) as exc:
        customer_row(Row(1, "", {"email": "bad", "phone": "12"}), "CN", TODAY)
    assert failure_reason(exc.value) == "email: invalid_email; phone: invalid_phone"


def test_unreadable_row_is_refused_with_its_problem():
    with pytest.raises(ValidationFailed) as exc:
        customer_row(Row(2, "x", None, "wrong_column_count"), "CN", TODAY)
    assert failure_reason(exc.value) == "wrong_column_count"


# --- Error file -----------------------------------------------------------------------------


def test_error_csv_lines_are_quoted_and_read_back():
    row = Row(7, 'a@example.com,"say ""hi""\nthere"', None, "broken_quoting")
    line = error_csv_line(row, "email: invalid_email; phone: invalid_phone")
    assert error_csv_header() == ERROR_CSV_HEADER == "row,original,reason\r\n"
    assert ErrorReport.line(row, "x") == error_csv_line(row, "x")
    back = list(csv.reader(io.StringIO(ERROR_CSV_HEADER + line)))
    assert back == [
        ["row", "original", "reason"],
        ["7", row.raw, "email: invalid_email; phone: invalid_phone"],
    ]


def test_error_csv_does_not_let_excel_run_formulas():
    line = error_csv_line(Row(1, "=HYPERLINK(1),x", None), "bad")
    assert next(csv.reader(io.StringIO(line)))[1] == "'=HYPERLINK(1),x"


# --- Streaming --------------------------------------------------------------------------------


def generated_csv(count: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """A CSV of `count` rows, made as it is read (the file itself is never in memory)."""
    buffer = bytearray(b"external_id,email,first_name,city,note\n")
    for i in range(count):
        buffer += f'shopify:{i},user{i}@example.com,名{i},广州,"a, b\n{i}"\n'.encode()
        if len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    while buffer:
        yield bytes(buffer[:chunk_size])
        del buffer[:chunk_size]


def test_50k_rows_stream_in_flat_memory():
    count = 50_000
    tracemalloc.start()
    try:
        seen = 0
        last = None
        for row in read_rows(generated_csv(count), "csv"):
            assert row.problem is None
            seen += 1
            last = row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert last is not None and last.number == count
    assert last.fields == {
        "external_id": f"shopify:{count - 1}",
        "email": f"user{count - 1}@example.com",
        "first_name": f"名{count - 1}",
        "city": "广州",
        "note": f"a, b\n{count - 1}",
    }
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB: rows are being kept"
