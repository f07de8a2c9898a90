"""Masked values that keep a useful shape: free text, column values, JSON, error fields, cells.

`mask_match` gives each detector its shape ("j***@example.com", "**** **** **** 4242"); the other
functions decide what to mask in a value (detector matches, whole values of masked columns, JSON
members by key, the values PostgreSQL echoes in error details) and `mask_cell` applies them to a
DataRow cell in text or binary format without producing a value the column's type would reject.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection
from typing import Any

from lockgate.masking.detectors import ALL, Scanner, scanner_for

MASK = "****"
HOWS = ("column", "derived", "json", "detect")

# PostgreSQL type OIDs (pg_type.dat).
TEXT_OIDS = frozenset({25, 1043, 1042, 19, 705})  # text, varchar, bpchar, name, unknown
JSON_OID = 114
JSONB_OID = 3802
# Text-format values of these types are lists of text-like elements that masked text keeps
# valid: text[], varchar[], bpchar[], name[], json[], jsonb[], record, record[].
_TEXT_CONTAINER_OIDS = frozenset({1009, 1015, 1014, 1003, 199, 3807, 2249, 2287})
_JSONB_VERSION = b"\x01"  # binary jsonb: a version byte, then the text form

# Masking can join kept characters with their neighbours into a new match ("a@b.co@c.com");
# mask_text rescans its output, and gives up on a text that keeps producing matches.
_MAX_PASSES = 4


@functools.cache
def _all_detectors() -> Scanner:
    return scanner_for(ALL)


def _keep_last_digits(value: str, keep: int) -> str:
    total = sum(1 for c in value if "0" <= c <= "9")
    seen = 0
    out = []
    for c in value:
        if "0" <= c <= "9":
            seen += 1
            out.append(c if seen > total - keep else "*")
        else:
            out.append(c)
    return "".join(out)


def _mask_iban(value: str) -> str:
    total = sum(1 for c in value if c.isalnum())
    seen = 0
    out = []
    for c in value:
        if c.isalnum():
            seen += 1
            out.append(c if seen <= 2 or seen > total - 4 else "*")
        else:
            out.append(c)
    return "".join(out)


def _mask_ip(value: str) -> str:
    if ":" not in value:
        octets = value.split(".")
        return ".".join([*octets[:2], "*", "*"]) if len(octets) == 4 else MASK
    # Keep the leading hextets but never end on "::" or a full group list: what remains must not
    # parse as an address again.
    parts = value.split(":")
    if parts[0] and len(parts) > 1 and parts[1]:
        return f"{parts[0]}:{parts[1]}:{MASK}"
    if parts[0]:
        return f"{parts[0]}:{MASK}"
    return f"::{MASK}"


def mask_match(detector: str, value: str) -> str:
    """The masked form of `value`, a match of `detector`, keeping a recognizable shape."""
    if detector == "email":
        local, at, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}" if at else MASK
    if detector in ("credit_card", "us_ssn"):
        return _keep_last_digits(value, 4)
    if detector == "phone":
        return _keep_last_digits(value, 2)
    if detector == "iban":
        return _mask_iban(value)
    if detector == "ip_address":
        return _mask_ip(value)
    if detector == "aws_access_key":
        return value[:4] + "*" * (len(value) - 4)
    return f"[REDACTED:{detector}]"


def mask_text(text: str, scanner: Scanner) -> tuple[str, int]:
    """`text` with every detector match masked, and the number of matches masked."""
    count = 0
    for _ in range(_MAX_PASSES):
        matches = scanner.scan(text)
        if not matches:
            return text, count
        count += len(matches)
        pieces = []
        last = 0
        for m in matches:
            pieces.append(text[last : m.start])
            pieces.append(mask_match(m.detector, text[m.start : m.end]))
            last = m.end
        pieces.append(text[last:])
        text = "".join(pieces)
    if scanner.has_any(text):
        return MASK, count + 1
    return text, count


_PLAIN_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def shapes_emails(scanner: Scanner | None) -> bool:
    """Whether `mask_column_value` gives a plain email its shape before any detector runs."""
    return scanner is None or "email" in scanner.names


def mask_column_value(value: str, scanner: Scanner | None) -> str:
    """A value of a column masked by name: its detector shape when one match is the whole value,
    else a fixed mask that does not reveal the length. `scanner=None` tries every detector."""
    stripped = value.strip()
    if shapes_emails(scanner) and _PLAIN_EMAIL.fullmatch(stripped):
        # The common case, shaped without running every detector over the value.
        return mask_match("email", stripped)
    if stripped:
        matches = (scanner if scanner is not None else _all_detectors()).scan(stripped)
        if len(matches) == 1 and matches[0].start == 0 and matches[0].end == len(stripped):
            return mask_match(matches[0].detector, stripped)
    return MASK


def mask_derived_value(value: str) -> str:
    """A value computed from a masked column (concatenation, aggregate...): fully masked."""
    return MASK


class _Number(str):
    """A JSON number kept as its source text: masking never rewrites numbers it leaves alone."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


class _JsonMasker:
    def __init__(self, keys: Collection[str], scanner: Scanner | None) -> None:
        self.keys = {k.casefold() for k in keys}
        self.scanner = scanner
        self.count = 0

    def text(self, s: str) -> str:
        if self.scanner is None:
            return s
        masked, n = mask_text(s, self.scanner)
        self.count += n
        return masked

    def walk(self, node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key.casefold() in self.keys:
                    out[self.text(key)] = self.hide(value)
                else:
                    out[self.text(key)] = self.walk(value)
            return out
        if isinstance(node, list):
            return [self.walk(item) for item in node]
        if isinstance(node, str) and not isinstance(node, _Number):
            return self.text(node)
        return node

    def hide(self, node: Any) -> Any:
        """Everything under a masked key: strings masked as column values, other scalars null."""
        self.count += 1
        if isinstance(node, dict):
            return {self.text(key): self.hide(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self.hide(item) for item in node]
        if isinstance(node, str) and not isinstance(node, _Number):
            return mask_column_value(node, self.scanner)
        return None  # numbers and booleans: any string would change the member's type


def _dump(node: Any, out: list[str]) -> None:
    # PostgreSQL's jsonb output style: ", " and ": " separators.
    if isinstance(node, _Number):
        out.append(node)
    elif isinstance(node, str):
        out.append(json.dumps(node, ensure_ascii=False))
    elif node is None:
        out.append("null")
    elif node is True:
        out.append("true")
    elif node is False:
        out.append("false")
    elif isinstance(node, dict):
        out.append("{")
        for i, (key, value) in enumerate(node.items()):
            if i:
                out.append(", ")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(": ")
            _dump(value, out)
        out.append("}")
    else:
        out.append("[")
        for i, item in enumerate(node):
            if i:
                out.append(", ")
            _dump(item, out)
        out.append("]")


def _mask_json_counted(
    text: str, keys: Collection[str], scanner: Scanner | None
) -> tuple[str, int]:
    masker = _JsonMasker(keys, scanner)
    try:
        doc = json.loads(
            text, parse_int=_Number, parse_float=_Number, parse_constant=_reject_constant
        )
        out: list[str] = []
        _dump(masker.walk(doc), out)
    except (ValueError, RecursionError):
        return MASK, 1
    return "".join(out), masker.count


def mask_json(text: str, keys: Collection[str], scanner: Scanner | None) -> str:
    """A JSON document with members under `keys` (any depth, case-insensitive) masked and, with a
    scanner, detector matches masked in every other string; "****" when `text` is not JSON."""
    return _mask_json_counted(text, keys, scanner)[0]


# `Key (a, b)=(x, y) already exists.` and the other key descriptions of
# BuildIndexValueDescription (src/backend/access/index/genam.c) and ri_ReportViolation. Columns
# may be expressions (`lower((email)::text)`). Values are printed unquoted, so a value list ends
# at the first ")" that a known continuation follows, or else at the last ")" of the text (which
# also covers translated messages).
_KEY_VALUES = re.compile(
    r"\((?P<cols>[^()]*(?:\((?:[^()]|\([^()]*\))*\)[^()]*)*)\)=\((?P<vals>.*?)\)"
    r"(?= already exists| is not present in table| is still referenced from table"
    r"| conflicts with (?:existing )?key| is duplicated|[^()]*\Z)",
    re.S,
)
_FAILING_ROW = re.compile(r"(Failing row contains )\(.*\)", re.S)
_IDENTIFIER = re.compile(r'"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*')
_ERROR_TEXT_FIELDS = ("M", "D", "H", "W", "q")  # message, detail, hint, where, internal query


def _split_top_level(s: str) -> list[str]:
    """`a, lower((b)::text), "c, d"` -> three items: commas inside parentheses or quotes stay."""
    items, depth, quoted, start = [], 0, False, 0
    for i, c in enumerate(s):
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        elif not quoted and depth == 0 and s.startswith(", ", i):
            items.append(s[start:i])
            start = i + 2
    items.append(s[start:])
    return items


def _names_masked_column(expression: str, columns: set[str]) -> bool:
    for ident in _IDENTIFIER.findall(expression):
        name = ident[1:-1].replace('""', '"') if ident.startswith('"') else ident
        if name.casefold() in columns:
            return True
    return False


def _mask_key_values(text: str, columns: set[str], scanner: Scanner | None) -> str:
    def replace(m: re.Match[str]) -> str:
        cols = _split_top_level(m.group("cols"))
        masked = [_names_masked_column(c, columns) for c in cols]
        if not any(masked):
            return m.group()
        vals = m.group("vals").split(", ")
        if len(vals) != len(cols):
            # A value held ", ": which value is which is ambiguous, so hide them all.
            vals = [MASK] * len(cols)
        else:
            vals = [
                mask_column_value(v, scanner) if h else v for v, h in zip(vals, masked, strict=True)
            ]
        return f"({m.group('cols')})=({', '.join(vals)})"

    return _KEY_VALUES.sub(replace, text)


def mask_error_fields(
    fields: dict[str, str], columns: Collection[str], scanner: Scanner | None
) -> dict[str, str]:
    """ErrorResponse/NoticeResponse fields (protocol-error-fields.html) with values of masked
    columns hidden in key descriptions and failing rows, and detector matches masked."""
    folded = {c.casefold() for c in columns}
    out = dict(fields)
    for code in _ERROR_TEXT_FIELDS:
        value = out.get(code)
        if value is None:
            continue
        if folded:
            value = _mask_key_values(value, folded, scanner)
            # The row's values are unlabelled: any of them may belong to a masked column.
            value = _FAILING_ROW.sub(rf"\g<1>({MASK})", value)
        if scanner is not None:
            value = mask_text(value, scanner)[0]
        out[code] = value
    return out


def mask_cell(
    raw: bytes,
    *,
    oid: int,
    binary: bool,
    how: str,
    keys: Collection[str] = (),
    scanner: Scanner | None = None,
) -> bytes | None:
    """A DataRow cell masked per `how` (column, derived, json, detect); None is SQL NULL, used
    where a mask would not be a valid value of the column's type."""
    if how not in HOWS:
        raise ValueError(f"unknown masking {how!r}; expected one of {', '.join(HOWS)}")
    is_json = oid in (JSON_OID, JSONB_OID)
    prefix = b""
    body = raw
    if binary:
        if oid == JSONB_OID:
            if raw[:1] != _JSONB_VERSION:
                return None  # an unknown jsonb version: nothing to parse, nothing to pass
            prefix, body = _JSONB_VERSION, raw[1:]
        elif oid not in TEXT_OIDS and oid != JSON_OID:
            # Binary int4, bytea, timestamp...: no text to look into, no mask that fits.
            return raw if how == "detect" else None
    text = bytes(body).decode("utf-8", errors="replace")

    if how == "detect":
        if scanner is None:
            return raw
        if is_json:
            out, count = _mask_json_counted(text, (), scanner)
        else:
            out, count = mask_text(text, scanner)
        if count == 0:
            return raw
        if not (is_json or oid in TEXT_OIDS or oid in _TEXT_CONTAINER_OIDS):
            return None  # e.g. inet "192.168.*.*" or int8 "****4242" would not parse
        return prefix + out.encode()

    if is_json:
        # A JSON string is a valid json/jsonb value and reveals nothing of the original.
        out = mask_json(text, keys, scanner) if how == "json" else json.dumps(MASK)
    elif oid in TEXT_OIDS:
        if how == "column":
            out = mask_column_value(text, scanner)
        elif how == "derived":
            out = mask_derived_value(text)
        else:
            out = mask_json(text, keys, scanner)
    else:
        return None  # int4 "42": "****" would not be a valid value of the type
    return prefix + out.encode()
