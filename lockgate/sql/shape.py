"""A key for SQL text that ignores the values of its literals, found without parsing.

Two statements with the same key are the same text except for the contents of their string
and numeric literals, so they parse to the same tree but for its constants: what
libpg_query's fingerprint ignores too, at a fraction of its cost (two regular-expression passes
instead of a parse). Text the key cannot be sure about has no key: comments, dollar quotes and
parameters (`$`), backslashes, characters other than printable ASCII and ASCII whitespace.
Callers then fall back to the fingerprint.

Without those, PostgreSQL's lexer and `_LITERAL` both take the leftmost quote as the start of a
literal or quoted identifier and end it at the next quote of its kind (a doubled `''` inside a
string is two adjacent literals here, the same two for every text with that key).
"""

from __future__ import annotations

import re

# A character that makes a text unsure: not printable ASCII or ASCII whitespace, or `$` (dollar
# quotes, parameters) or a backslash (escape strings).
_UNSURE_CHAR = re.compile(r"[^\t\n\r\f -#%-\[\]-~]")

# Literals, scanned from the left as PostgreSQL's lexer does (leftmost quote first). Quoted
# identifiers are matched so that quotes inside them are not taken for strings; they stay. A
# number counts only whole: not inside a word, not run into one (`t1`, `1abc` stay as written).
# (The leading lookahead only lets the scan skip quickly to where a literal could start.)
_LITERAL = re.compile(
    r"""(?=["'.0-9])(?:("(?:[^"]|"")*")|'[^']*'"""
    r"|(?<![A-Za-z0-9_.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z0-9_.]))"
)

# Placeholders no text with a key can contain (control characters are unsure).
_STRING, _NUMBER = "'\x01'", "\x01"


def _placeholder(match: re.Match[str]) -> str:
    quoted = match[1]
    if quoted is not None:
        return quoted
    return _STRING if match[0][0] == "'" else _NUMBER


def shape_key(sql: str) -> str | None:
    """`sql` with each string literal and each number replaced by a placeholder, or None."""
    if "--" in sql or "/*" in sql or _UNSURE_CHAR.search(sql) is not None:
        return None
    return _LITERAL.sub(_placeholder, sql)
