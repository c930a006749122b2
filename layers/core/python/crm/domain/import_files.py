"""Reading files dropped in the S3 drop bucket (`incoming/customers/` ...), row by row.

Pure and streaming: bytes come in as an iterable of chunks (an S3 body read piece by piece)
and rows go out one at a time, so memory stays flat however large the file is. A row that
cannot be read is not an exception: it is a `Row` with a `problem`, so the import can go on
and list it in the error file (`results/<path>.errors.csv`: row number, original row, reason).

Encodings: UTF-8 with or without BOM, and GB18030, which is what Excel writes on a Chinese
Windows when asked for "CSV". See `detect_encoding`.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import chain
from typing import Any

from crm.domain.customers import ProfileInput, parse_profile
from crm.domain.errors import ValidationFailed
from crm.domain.parsing import ascii_int, load_json

UTF8_BOM = codecs.BOM_UTF8
# How much of the start of a file `read_rows` looks at to choose the encoding.
SAMPLE_BYTES = 64 * 1024
# A "line" longer than this is cut, so a file without line breaks cannot fill the memory.
MAX_LINE_BYTES = 1_000_000
# Shopify notes can be long; attributes are limited to 8 KB in all.
MAX_NOTE = 2000
CONSENT_SOURCE = "import"

CSV, JSONL = "csv", "jsonl"
_FORMATS = {".csv": CSV, ".txt": CSV, ".jsonl": JSONL, ".ndjson": JSONL}

WRONG_COLUMN_COUNT = "wrong_column_count"
BROKEN_QUOTING = "broken_quoting"
FIELD_TOO_LARGE = "field_too_large"
UNREADABLE = "unreadable_row"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
INVALID_ENCODING = "invalid_encoding"


@dataclass(frozen=True, slots=True)
class Row:
    """One record of a dropped file.

    `number` is the 1-based data row number (for CSV the header is row 0; blank lines are
    skipped and not counted). `raw` is the record's original text without its final line
    break (a quoted field may hold line breaks). `fields` is column -> value, or None when
    the row has a `problem` (a short reason such as "wrong_column_count"). `end` is the byte
    offset in the file just after the record: where reading resumes after this row."""

    number: int
    raw: str
    fields: dict[str, Any] | None
    problem: str | None = None
    end: int = field(default=0, compare=False)


# --- Encoding -----------------------------------------------------------------------------


def detect_encoding(sample: bytes) -> str:
    """The encoding of a file, from the first bytes of it.

    - "utf-8-sig" when the sample starts with the UTF-8 BOM (Excel's "CSV UTF-8");
    - "utf-8" when the sample is valid UTF-8 (pure ASCII included). The sample is usually
      cut from a longer file, so an incomplete multi-byte sequence at its very end is allowed;
    - otherwise "gb18030", what Excel writes on a Chinese Windows (a superset of GBK/GB2312).
    """
    if sample.startswith(UTF8_BOM):
        return "utf-8-sig"
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def iter_text(chunks: Iterable[bytes], encoding: str, errors: str = "strict") -> Iterator[str]:
    """The text of a byte stream, decoded piece by piece (a character split between two
    chunks is put back together). Never holds more than one chunk."""
    decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


class _LineDecoder:
    """Decodes a file line by line. "utf-8" means "UTF-8, unless an invalid sequence shows up
    while everything before it was ASCII": then the file is GB18030 with an ASCII start (header
    and first rows), and the rest is decoded as GB18030 (ASCII reads the same in both). Bytes
    that fit neither become U+FFFD (and the row is reported as `invalid_encoding`)."""

    def __init__(self, encoding: str, *, at_start: bool, ascii_so_far: bool) -> None:
        self.encoding = encoding
        self.ascii_so_far = ascii_so_far
        self._strip_bom = at_start and encoding == "utf-8-sig"

    def decode(self, line: bytes) -> str:
        if self._strip_bom:
            self._strip_bom = False
            line = line.removeprefix(UTF8_BOM)
        if self.encoding == "gb18030":
            return line.decode("gb18030", errors="replace")
        if self.encoding == "utf-8-sig":
            return line.decode("utf-8", errors="replace")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            if self.ascii_so_far:
                self.encoding = "gb18030"
                return line.decode("gb18030", errors="replace")
            return line.decode("utf-8", errors="replace")
        self.ascii_so_far = self.ascii_so_far and text.isascii()
        return text


def _byte_lines(chunks: Iterable[bytes], offset: int) -> Iterator[tuple[bytes, int]]:
    """Lines split at b"\\n" (never part of a UTF-8 or GB18030 multi-byte character), each with
    its line break and the byte offset just after it. A "line" longer than MAX_LINE_BYTES is
    cut, so a file without line breaks cannot fill the memory."""
    rest = b""
    position = offset
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n") if rest else chunk.split(b"\n")
        rest = parts.pop()
        for part in parts:
            position += len(part) + 1
            yield part + b"\n", position
        while len(rest) > MAX_LINE_BYTES:
            position += MAX_LINE_BYTES
            yield rest[:MAX_LINE_BYTES], position
            rest = rest[MAX_LINE_BYTES:]
    if rest:
        yield rest, position + len(rest)


# --- Rows -------------------------------------------------------------------------------------


def format_for(key: str) -> str:
    """ "csv" or "jsonl" from a file name or S3 key; ValueError for anything else."""
    name = key.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    fmt = _FORMATS.get(name[dot:]) if dot >= 0 else None
    if fmt is None:
        raise ValueError(f"{key!r} is not a .csv, .txt, .jsonl or .ndjson file")
    return fmt


@dataclass
class Position:
    """Where a reader stands in a file, enough to go on from there in another process: the
    byte offset of the next record, the number of the last row read, the CSV header and the
    encoding as decided so far."""

    offset: int = 0
    number: int = 0
    header: list[str] | None = None
    encoding: str | None = None
    ascii_so_far: bool = True


class FileReader:
    """The rows of a file (or of the rest of it, from `start`), one at a time.

    `chunks` are the file's bytes from `start.offset` on. The encoding is detected from the
    first SAMPLE_BYTES when `start.encoding` is None. After each row, `position()` tells
    where to resume so that the next row read is the one after it."""

    def __init__(self, chunks: Iterable[bytes], fmt: str, start: Position | None = None) -> None:
        if fmt not in (CSV, JSONL):
            raise ValueError(f"unknown format {fmt!r}")
        start = start or Position()
        iterator = iter(chunks)
        encoding = start.encoding
        if encoding is None:
            head: list[bytes] = []
            size = 0
            for chunk in iterator:
                head.append(chunk)
                size += len(chunk)
                if size >= SAMPLE_BYTES:
                    break
            encoding = detect_encoding(b"".join(head))
            iterator = chain(head, iterator)
        self.fmt = fmt
        self.header = list(start.header) if start.header is not None else None
        self._number = start.number
        self._end = start.offset
        self._decoder = _LineDecoder(
            encoding, at_start=start.offset == 0, ascii_so_far=start.ascii_so_far
        )
        self._lines = _byte_lines(iterator, start.offset)
        self._line_end = start.offset

    @property
    def encoding(self) -> str:
        return self._decoder.encoding

    def position(self) -> Position:
        return Position(
            offset=self._end,
            number=self._number,
            header=self.header,
            encoding=self._decoder.encoding,
            ascii_so_far=self._decoder.ascii_so_far,
        )

    def _text_lines(self) -> Iterator[str]:
        decode = self._decoder.decode
        for line, end in self._lines:
            self._line_end = end
            yield decode(line)

    def __iter__(self) -> Iterator[Row]:
        rows = self._csv_rows() if self.fmt == CSV else self._jsonl_rows()
        for row in rows:
            self._number, self._end = row.number, row.end
            if row.problem is None and "\ufffd" in row.raw:
                yield Row(row.number, row.raw, None, INVALID_ENCODING, row.end)
            else:
                yield row

    def _csv_rows(self) -> Iterator[Row]:
        source = _RecordingLines(self._text_lines())
        # strict: an unclosed quote at the end of the file, or text after a closing quote, is
        # an error (non-strict csv would silently make something up).
        reader = csv.reader(source, strict=True)
        number = self._number
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield Row(number, source.record(), None, _csv_problem(exc), self._line_end)
                continue
            raw = source.record()
            end = self._line_end
            if not raw.strip():
                self._end = end  # a blank line: resume after it
                continue
            if self.header is None:
                header = [name.strip() for name in values]
                if header and header[0].startswith("\ufeff"):
                    header[0] = header[0][1:].strip()
                self.header = header
                self._end = end
                continue
            number += 1
            if len(values) != len(self.header):
                yield Row(number, raw, None, WRONG_COLUMN_COUNT, end)
            else:
                yield Row(number, raw, dict(zip(self.header, values, strict=True)), None, end)

    def _jsonl_rows(self) -> Iterator[Row]:
        number = self._number
        for line in self._text_lines():
            end = self._line_end
            raw = line.rstrip("\r\n")
            text = raw.strip().lstrip("\ufeff")
            if not text:
                self._end = end
                continue
            number += 1
            try:
                value = load_json(text)  # strict: no NaN, no Infinity, nesting at most 64
            except ValueError:
                yield Row(number, raw, None, INVALID_JSON, end)
                continue
            if not isinstance(value, dict):
                yield Row(number, raw, None, NOT_AN_OBJECT, end)
            else:
                yield Row(number, raw, value, None, end)


def read_rows(chunks: Iterable[bytes], fmt: str, *, encoding: str | None = None) -> Iterator[Row]:
    """The rows of a whole file, one at a time. `encoding` is detected when not given."""
    return iter(FileReader(chunks, fmt, Position(encoding=encoding)))


class _RecordingLines:
    """Hands lines to the csv reader and keeps those of the record being read."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.taken: list[str] = []

    def __iter__(self) -> _RecordingLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line

    def record(self) -> str:
        raw = "".join(self.taken)
        self.taken = []
        if raw.endswith("\n"):
            raw = raw[:-1]
        return raw[:-1] if raw.endswith("\r") else raw


def _csv_problem(error: csv.Error) -> str:
    message = str(error)
    if "field larger" in message:
        return FIELD_TOO_LARGE
    if "NUL" in message:
        return UNREADABLE
    return BROKEN_QUOTING


# --- Customers ------------------------------------------------------------------------------

# Header (trimmed, lower-cased) -> where the value goes. Shopify's export headers are taken
# as they are, with and without the "Default Address " prefix of newer exports. When two
# columns fill the same place the first non-empty one wins, except that Province Code beats
# Province and Phone beats Default Address Phone.
_COLUMNS: dict[str, str] = {
    # The project's own columns.
    "external_id": "external_id",
    "email": "email",
    "phone": "phone",
    "first_name": "first_name",
    "last_name": "last_name",
    "birthday": "birthday",
    "gender": "gender",
    "locale": "locale",
    "timezone": "timezone",
    "tags": "tags",
    "country_code": "address.country_code",
    "province": "address.province",
    "city": "address.city",
    "zip": "address.zip",
    "line1": "address.line1",
    "line2": "address.line2",
    "accepts_email": "consents.email",
    "accepts_sms": "consents.sms",
    # Shopify's customer export.
    "customer id": "shopify_id",
    "first name": "first_name",
    "last name": "last_name",
    "accepts email marketing": "consents.email",
    "accepts sms marketing": "consents.sms",
    "default address company": "attributes.company",
    "company": "attributes.company",
    "default address address1": "address.line1",
    "address1": "address.line1",
    "default address address2": "address.line2",
    "address2": "address.line2",
    "default address city": "address.city",
    "default address province code": "address.province",
    "province code": "address.province",
    "default address country code": "address.country_code",
    "country code": "address.country_code",
    "country": "country_name",
    "default address zip": "address.zip",
    "default address phone": "address_phone",
    "total spent": "attributes.shopify_total_spent",
    "total orders": "attributes.shopify_total_orders",
    "note": "attributes.note",
    "tax exempt": "attributes.tax_exempt",
}
# Values Excel may have protected with a leading apostrophe (Shopify exports do this).
_PROTECTED = {"shopify_id", "external_id", "phone", "address_phone", "address.zip"}
# Older Shopify exports have both "Province" (a name) and "Province Code": the code wins.
_PREFERRED = {"province code", "default address province code"}
# In a JSON Lines object these may come already in the profile's own shape.
_STRUCTURED = {"external_ids", "address", "tags", "consents", "attributes"}
_TRUE = {"yes", "y", "true", "1"}
_FALSE = {"no", "n", "false", "0"}
_TAG_SEPARATORS = re.compile(r"[;,]")
_SOURCE_ID = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(\S.*?)\s*$")


def _clean(value: str, protected: bool) -> str:
    text = value.strip()
    if protected:
        if text.startswith('="') and text.endswith('"'):
            text = text[2:-1].strip()
        text = text.lstrip("'").strip()
    return text


def _flag(value: Any) -> Any:
    """yes/no/true/false/1/0 as a bool; anything else is left for validation to refuse."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return value


def _map_customer(fields: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body: dict[str, Any] = {}
    address: dict[str, Any] = {}
    consents: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    external_ids: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    fallback_phone: str | None = None
    country_name: str | None = None

    for column, value in fields.items():
        name = str(column).strip().lower()
        if value is None or value == "":
            continue
        if name in _STRUCTURED and not isinstance(value, str):
            # A JSON Lines object in the shape of the API body.
            target = {
                "external_ids": external_ids,
                "address": address,
                "consents": consents,
                "attributes": attributes,
            }.get(name)
            if target is not None and isinstance(value, dict):
                for key, item in value.items():
                    target.setdefault(key, item)
            else:
                body[name] = value
            continue
        place = _COLUMNS.get(name)
        if place is None:
            continue  # unknown columns are ignored: Shopify adds columns over time
        if isinstance(value, str):
            value = _clean(value, place in _PROTECTED)
            if not value:
                continue
        elif isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if place == "shopify_id":
            external_ids.setdefault("shopify", value)
        elif place == "external_id":
            for part in str(value).split(";"):
                if not part.strip():
                    continue
                match = _SOURCE_ID.match(part)
                if match is None:
                    problems.append({"field": "external_id", "issue": "invalid_external_id"})
                else:
                    external_ids.setdefault(match.group(1).lower(), match.group(2))
        elif place == "address_phone":
            fallback_phone = value
        elif place == "country_name":
            country_name = value
        elif place == "tags":
            if isinstance(value, str):
                value = [t.strip() for t in _TAG_SEPARATORS.split(value) if t.strip()]
            body.setdefault("tags", value)
        elif place.startswith("address."):
            if name in _PREFERRED:
                address[place[len("address.") :]] = value
            else:
                address.setdefault(place[len("address.") :], value)
        elif place.startswith("consents."):
            consents.setdefault(place[len("consents.") :], _flag(value))
        elif place.startswith("attributes."):
            key = place[len("attributes.") :]
            if key == "tax_exempt":
                value = _flag(value)
            elif key == "shopify_total_orders" and ascii_int(str(value)) is not None:
                value = ascii_int(str(value))
            elif key == "note" and isinstance(value, str):
                value = value[:MAX_NOTE]
            attributes.setdefault(key, value if isinstance(value, bool | int) else str(value))
        else:
            body.setdefault(place, value)

    if "phone" not in body and fallback_phone:
        body["phone"] = fallback_phone
    # Older Shopify exports have "Country" (a name) next to "Country Code"; a name is only
    # used when it is itself a two-letter code.
    if (
        "country_code" not in address
        and country_name
        and len(country_name) == 2
        and country_name.isalpha()
    ):
        address["country_code"] = country_name
    if external_ids:
        body["external_ids"] = external_ids
    if address:
        body["address"] = address
    if consents:
        body["consents"] = consents
    if attributes:
        body["attributes"] = attributes
    return body, problems


def customer_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A row's columns as a profile body for `parse_profile`.

    Takes the project's documented columns (`external_id` "source:id", `email`, `phone`,
    names, `birthday`, `gender`, `locale`, `tags` "a;b" or "a,b", `country_code`,
    `province`, `city`, `zip`, `line1`, `accepts_email`/`accepts_sms` yes/no/true/false/1/0)
    and Shopify's customer export headers as they are. Shopify's "Customer ID" becomes
    `external_ids.shopify`; Company, Note, Tax Exempt, Total Spent and Total Orders go to
    `attributes` (company, note, tax_exempt, shopify_total_spent, shopify_total_orders).
    Empty values are absent, unknown columns ignored. A JSON Lines object may also use the
    API's own nested fields (`external_ids`, `address`, `consents`, `attributes`).
    Raises `ValidationFailed` for an `external_id` that is not "source:id"."""
    body, problems = _map_customer(fields)
    if problems:
        raise ValidationFailed("the row has invalid columns", details=problems)
    return body


def customer_row(row: Row, default_country: str, today: date) -> ProfileInput:
    """The validated profile of one row; `ValidationFailed` (see `failure_reason`) when the
    row is unreadable, has no identity at all, or has invalid values."""
    if row.problem is not None or row.fields is None:
        problem = row.problem or UNREADABLE
        raise ValidationFailed(
            f"the row cannot be read: {problem}", details=[{"field": "", "issue": problem}]
        )
    body, problems = _map_customer(row.fields)
    if not problems and not any(body.get(k) for k in ("external_ids", "email", "phone")):
        raise ValidationFailed(
            "the row has no external id, email or phone",
            details=[{"field": "external_id|email|phone", "issue": "no_identity"}],
        )
    try:
        profile = parse_profile(
            body,
            default_country=default_country,
            today=today,
            partial=False,
            consent_source=CONSENT_SOURCE,
            drop_excess_ids=True,  # the row is kept, ids past the maximum are not
        )
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, details=[*problems, *exc.details]) from exc
    if problems:
        raise ValidationFailed("the row has invalid columns", details=problems)
    return profile


def failure_reason(error: ValidationFailed) -> str:
    """A short, readable reason for the error file: "email: invalid_email; phone: ..."."""
    parts = [
        f"{d.get('field')}: {d.get('issue')}" if d.get("field") else str(d.get("issue"))
        for d in error.details
    ]
    return "; ".join(parts) if parts else error.message


# --- Error file -------------------------------------------------------------------------------

ERROR_CSV_HEADER = "row,original,reason\r\n"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    # The error file is opened in Excel: a cell starting like a formula is shown as text.
    return "'" + text if text.startswith(_FORMULA_START) else text


def error_csv_header() -> str:
    """The first line of `results/<path>.errors.csv`."""
    return ERROR_CSV_HEADER


def error_csv_line(row: Row, reason: str) -> str:
    """One line of the error file: `row_number,original_row,reason`, quoted as CSV needs
    (the original row may hold commas, quotes and line breaks)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([row.number, _cell(row.raw), _cell(reason)])
    return out.getvalue()


class ErrorReport:
    """The error file's lines, for a writer that streams them to S3."""

    header = staticmethod(error_csv_header)
    line = staticmethod(error_csv_line)
