"""Content detectors: find emails, card numbers, keys and other secrets in free text.

A `Scanner` compiles its detectors into ONE regex alternation (in priority order, an empty
named marker group closing each branch tells which detector matched) behind a pre-filter: a small
regex of necessary conditions (an '@' for email, a '$' for crypt hashes, a run of 15 token
characters for keys...) that lets most clean cells skip the big regex. Checksums (Luhn, ISO 7064
mod-97, the JWT header) run only on regex candidates. The relay asks the same pre-filter about
many cells at once (`Scanner.segments_with_triggers`, in RE2) to find the rows it must scan.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import json
import math
import re
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import re2

Span = tuple[int, int]
Validator = Callable[["re.Match[str]"], Span | None]


@dataclass(frozen=True, slots=True)
class Match:
    """A validated detection: `text[start:end]` is the sensitive value."""

    detector: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Detector:
    name: str
    # Alternatives as (class of the first character, rest of the pattern). The rest re-checks
    # what precedes the first character with a lookbehind (`(?<![...].)`): sre skips a branch
    # that starts with a literal or a class in one comparison, which is what keeps the combined
    # alternation fast on prose. Group names start with f"{name}_" so patterns combine.
    alternatives: tuple[tuple[str, str], ...]
    # Necessary conditions, one of which holds in every text the alternatives match in, in the
    # same (first character class, rest) shape.
    triggers: tuple[tuple[str, str], ...]
    # Returns the span to report (possibly narrowed) or None to reject the candidate.
    validate: Validator | None = None
    # Also triggered by a run of 15 token characters.
    needs_run: bool = False


# Characters of API tokens, JWTs and base64 secrets; every token-like detector needs a run of
# at least 15 of them, which is what lets prose skip the big regex.
_TOKEN_CHARS = "A-Za-z0-9_+/=.~-"


def _digits(s: str) -> str:
    return "".join(c for c in s if "0" <= c <= "9")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _validate_credit_card(m: re.Match[str]) -> Span | None:
    start, end = m.span()
    text = m.string
    # The regex is greedy; a trailing group may belong to the next token, so drop groups
    # from the right until the Luhn check passes or too few digits remain.
    while True:
        digits = _digits(text[start:end])
        if len(digits) < 13:
            return None
        if len(digits) <= 19 and len(set(digits)) > 1 and _luhn(digits):
            return start, end
        cut = max(text.rfind(" ", start, end), text.rfind("-", start, end))
        if cut <= start:
            return None
        end = cut


# ISO 13616 registry: country code -> IBAN length. Countries not listed are accepted at any
# length from 15 to 34 (the mod-97 check still applies).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def _iban_ok(compact: str) -> bool:
    n = len(compact)
    if not 15 <= n <= 34 or _IBAN_LENGTHS.get(compact[:2], n) != n:
        return False
    rearranged = compact[4:] + compact[:4]
    # ISO 7064 MOD 97-10: letters count as 10..35.
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _validate_iban(m: re.Match[str]) -> Span | None:
    start, end = m.span()
    text = m.string
    # As for cards: the greedy regex may have swallowed a following uppercase word.
    while True:
        if _iban_ok(text[start:end].replace(" ", "")):
            return start, end
        cut = text.rfind(" ", start, end)
        if cut <= start:
            return None
        end = cut


def _validate_phone(m: re.Match[str]) -> Span | None:
    n = len(_digits(m.group()))
    # E.164 allows at most 15 digits; fewer than 8 is more likely a number than a phone.
    return m.span() if 8 <= n <= 15 else None


def _validate_ip(m: re.Match[str]) -> Span | None:
    candidate = m.group()
    if ":" not in candidate:
        return m.span()  # IPv4: the regex already bounds every octet
    if not any(c not in ":." for c in candidate):
        return None  # a bare "::" in prose
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    return m.span()


def _looks_random(s: str) -> bool:
    """A secret-like string: mixes character classes and has high Shannon entropy."""
    classes = (
        any(c.islower() for c in s) + any(c.isupper() for c in s) + any(c.isdigit() for c in s)
    )
    if classes < 2:
        return False
    n = len(s)
    entropy = -sum(k / n * math.log2(k / n) for k in Counter(s).values())
    return entropy >= 3.0


def _validate_api_key(m: re.Match[str]) -> Span | None:
    for group in ("api_key_kv", "api_key_bearer", "api_key_sk"):
        value = m.group(group)
        if value is not None:
            if not _looks_random(value.rstrip("=")):
                return None
            return m.span() if group == "api_key_sk" else m.span(group)
    return m.span()


def _validate_jwt(m: re.Match[str]) -> Span | None:
    header = m.group().split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):
        return None
    return m.span() if isinstance(decoded, dict) and "alg" in decoded else None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# An optional embedded IPv4 address (::ffff:192.0.2.1), then the end of the candidate.
_V6_TAIL = r"(?:(?<=:)(?:[0-9]{1,3}\.){3}[0-9]{1,3})?(?![A-Za-z0-9_:.])"
_DIGIT_TRIGGER = ("0-9", "[0-9][ .-][0-9]{4}")  # a group of 4 after a separator

# In priority order: at one position, the first detector whose alternative matches wins.
_DETECTORS: tuple[_Detector, ...] = (
    _Detector(
        "private_key",
        # A key cut off by a length limit is still a key: an unterminated block runs to the end.
        (
            (
                "-",
                r"----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                r"(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            ),
        ),
        (("-", "----"),),
    ),
    _Detector(
        "jwt",
        (("e", r"(?<![A-Za-z0-9_-].)yJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"),),
        (),
        _validate_jwt,
        needs_run=True,
    ),
    _Detector(
        "password_hash",
        (
            ("$", r"2[abxy]?\$[0-9]{2}\$[./A-Za-z0-9]{53}"),
            (
                "$",
                r"argon2(?:id|i|d)\$(?:v=[0-9]+\$)?m=[0-9]+,t=[0-9]+,p=[0-9]+"
                r"\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}",
            ),
            ("$", r"[56]\$(?:rounds=[0-9]+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86}"),
            (
                "S",
                r"CRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/]+={0,2}"
                r"\$[A-Za-z0-9+/]+={0,2}:[A-Za-z0-9+/]+={0,2}",
            ),
            ("m", r"(?<![A-Za-z0-9].)d5[0-9a-f]{32}(?![A-Za-z0-9])"),
        ),
        (("$", ""),),
        needs_run=True,
    ),
    _Detector(
        "aws_access_key",
        (("A", r"(?<![A-Za-z0-9].)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),),
        (),
        needs_run=True,
    ),
    _Detector(
        "api_key",
        (
            ("sr", r"(?<![A-Za-z0-9_-].)k_(?:live|test)_[A-Za-z0-9]{10,}"),
            ("s", r"(?<![A-Za-z0-9_-].)k-(?P<api_key_sk>[A-Za-z0-9_-]{20,})"),
            ("g", r"(?<![A-Za-z0-9_].)h[pousr]_[A-Za-z0-9]{30,}"),
            ("g", r"(?<![A-Za-z0-9_].)ithub_pat_[A-Za-z0-9_]{22,}"),
            ("x", r"(?<![A-Za-z0-9_-].)ox[bpars]-[A-Za-z0-9-]{10,}"),
            ("A", r"(?<![A-Za-z0-9_-].)Iza[A-Za-z0-9_-]{35}"),
            ("l", r"(?<![A-Za-z0-9_].)gn?_[0-9a-f]{16}_[A-Za-z0-9_-]{16,}"),
            ("Bb", r"(?<![A-Za-z0-9].)earer[ \t]+(?P<api_key_bearer>[A-Za-z0-9._~+/-]{16,}=*)"),
            (
                "AaCcPpSsTt",
                # `token=...`, `"api_key": "..."`: only the value is reported.
                r"(?<![A-Za-z0-9].)(?i:(?<=a)pi[_-]?key|(?<=a)ccess[_-]?(?:key|token)"
                r"|(?<=a)uth[_-]?token|(?<=s)ecret(?:[_-]?key)?|(?<=t)oken"
                r"|(?<=c)lient[_-]?secret|(?<=p)assword)"
                r"[\"']?[ \t]*[=:][ \t]*[\"']?(?P<api_key_kv>[A-Za-z0-9+/_.~-]{16,}=*)",
            ),
        ),
        (),
        _validate_api_key,
        needs_run=True,
    ),
    _Detector(
        "email",
        (
            (
                "A-Za-z0-9._%+-",
                # Starts only where a run of local-part characters starts: linear on prose.
                r"(?<![A-Za-z0-9._%+-].)[A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}",
            ),
        ),
        (("@", ""),),
    ),
    _Detector(
        "iban",
        (("A-Z", r"(?<![A-Za-z0-9].)[A-Z][0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])"),),
        (("A-Z", "[A-Z][0-9]{2}"),),
        _validate_iban,
    ),
    _Detector(
        "credit_card",
        (
            ("0-9", r"(?<![0-9].)[0-9]{12,18}(?![0-9])"),
            (
                "0-9",
                r"(?<![0-9].)[0-9]{3}(?P<credit_card_s1>[ -])[0-9]{4}(?P=credit_card_s1)[0-9]{4}"
                r"(?P=credit_card_s1)[0-9]{1,4}(?:(?P=credit_card_s1)[0-9]{1,3})?(?![0-9])",
            ),
            (
                "0-9",
                r"(?<![0-9].)[0-9]{3}(?P<credit_card_s2>[ -])[0-9]{6}(?P=credit_card_s2)[0-9]{4,5}"
                r"(?![0-9])",
            ),
        ),
        (("0-9", "[0-9]{12}"), _DIGIT_TRIGGER),
        _validate_credit_card,
    ),
    _Detector(
        "us_ssn",
        (
            (
                "0-9",
                # AAA-GG-SSSS; area 000, 666 and 9xx, group 00 and serial 0000 are never issued.
                r"(?<![0-9].)(?<![0-9]-.)(?<=[0-8])(?!(?<=0)00-|(?<=6)66-)[0-9]{2}-(?!00)[0-9]{2}"
                r"-(?!0000)[0-9]{4}(?![0-9])(?!-[0-9])",
            ),
        ),
        (_DIGIT_TRIGGER,),
    ),
    _Detector(
        "phone",
        (
            # North American NXX-NXX-XXXX; bare digit runs are more often ids than phones.
            (
                "0-9",
                r"(?<![A-Za-z0-9_+.-].)(?<=[2-9])[0-9]{2}[ .-][0-9]{3}[ .-][0-9]{4}"
                r"(?![A-Za-z0-9_-])",
            ),
            ("(", r"(?<![A-Za-z0-9_+.-].)[2-9][0-9]{2}\) ?[0-9]{3}[ .-][0-9]{4}(?![A-Za-z0-9_-])"),
            # International: +CC then groups; the validator counts the digits.
            ("+", r"(?<![A-Za-z0-9_+].)[0-9]{1,3}(?>[ .-]?(?:\([0-9]{1,4}\)|[0-9]+)){1,6}"),
        ),
        (("+", "[0-9]"), _DIGIT_TRIGGER),
        _validate_phone,
    ),
    _Detector(
        "ip_address",
        (
            (
                "0-9",
                # The first octet's first digit is already consumed; no leading zeros.
                r"(?<![0-9.].)(?:(?<=2)(?:5[0-5]|[0-4][0-9])|(?<=1)[0-9]{2}|(?<=[1-9])[0-9]|)"
                rf"\.(?:{_OCTET}\.){{2}}{_OCTET}(?!\.?[0-9])",
            ),
            # IPv6 candidates are hex groups and colons; ipaddress decides.
            (
                "0-9A-Fa-f",
                rf"(?<![A-Za-z0-9_:.].)[0-9A-Fa-f]{{0,3}}(?::[0-9A-Fa-f]{{0,4}}){{2,7}}{_V6_TAIL}",
            ),
            (
                ":",
                rf"(?<![A-Za-z0-9_:.].)[0-9A-Fa-f]{{0,4}}(?::[0-9A-Fa-f]{{0,4}}){{1,7}}{_V6_TAIL}",
            ),
        ),
        (("0-9", r"\.[0-9]{1,3}\.[0-9]"), (":", "[0-9A-Fa-f:]")),
        _validate_ip,
    ),
)

ALL: tuple[str, ...] = (
    "email",
    "phone",
    "credit_card",
    "iban",
    "us_ssn",
    "ip_address",
    "aws_access_key",
    "api_key",
    "jwt",
    "private_key",
    "password_hash",
)
assert set(ALL) == {d.name for d in _DETECTORS}


def _charset(cls: str) -> frozenset[str]:
    return frozenset(c for c in map(chr, range(128)) if re.fullmatch(f"[{cls}]", c))


def _combine(alternatives: Iterable[tuple[str, str]]) -> str:
    """One alternation from (first character class, rest) pairs, in priority order.

    Alternatives with the same first class share one branch (`[0-9](?:a|b|c)`), so sre tests
    that class once per position. An alternative only moves ahead of branches whose first
    characters it cannot share, which keeps the order of alternatives that can match at the
    same position.
    """
    groups: list[tuple[str, frozenset[str], list[str]]] = []
    for cls, rest in alternatives:
        chars = _charset(cls)
        for gcls, gchars, bodies in reversed(groups):
            if gcls == cls:
                bodies.append(rest)
                break
            if gchars & chars:
                groups.append((cls, chars, [rest]))
                break
        else:
            groups.append((cls, chars, [rest]))
    branches = []
    for cls, _, bodies in groups:
        first = re.escape(cls) if len(cls) == 1 else f"[{cls}]"
        branches.append(first + (bodies[0] if len(bodies) == 1 else f"(?:{'|'.join(bodies)})"))
    return "|".join(branches)


class Scanner:
    """Finds the matches of a set of detectors in text; build once, scan many cells."""

    __slots__ = ("_detector_of", "_fallbacks", "_prefilter", "_regex", "_run", "_triggers", "names")

    def __init__(self, names: Iterable[str]) -> None:
        wanted = set(names)
        unknown = sorted(wanted - set(ALL))
        if unknown:
            raise ValueError(
                f"unknown detector(s): {', '.join(unknown)}; valid detectors: {', '.join(ALL)}"
            )
        detectors = [d for d in _DETECTORS if d.name in wanted]
        self.names: tuple[str, ...] = tuple(n for n in ALL if n in wanted)
        # Each alternative ends with an empty marker group: `lastgroup` then names the branch
        # that matched (the marker is the last group to close).
        self._detector_of: dict[str, _Detector] = {}
        marked: list[tuple[str, str]] = []
        alone: list[tuple[_Detector, re.Pattern[str]]] = []
        for d in detectors:
            for cls, rest in d.alternatives:
                marker = f"{d.name}__{len(self._detector_of)}"
                self._detector_of[marker] = d
                marked.append((cls, f"{rest}(?P<{marker}>)"))
                alone.append((d, re.compile(_combine([(cls, rest)]), re.ASCII)))
        self._regex = re.compile(_combine(marked), re.ASCII) if marked else None
        # For a candidate its validator rejects: the alternatives after it, tried alone at the
        # same position (the alternation only reports the first branch that matched there).
        self._fallbacks = {
            marker: tuple(alone[i + 1 :]) for i, marker in enumerate(self._detector_of)
        }
        # The 15-character run is checked apart: it is costly on prose and can never hold in
        # a cell shorter than 15 characters.
        self._run = (
            re.compile(f"(?<![{_TOKEN_CHARS}])[{_TOKEN_CHARS}]{{15}}", re.ASCII)
            if any(d.needs_run for d in detectors)
            else None
        )
        triggers = list(dict.fromkeys(t for d in detectors for t in d.triggers))
        # One leading class of every trigger's first character (sre then skips other
        # characters with a bitmap), then lookbehinds pick the triggers that can apply.
        firsts = "".join(sorted({c for cls, _ in triggers for c in _charset(cls)}))
        self._prefilter = (
            re.compile(
                f"[{re.escape(firsts)}]"
                f"(?:{'|'.join(f'(?<=[{cls}]){rest}' for cls, rest in triggers)})",
                re.ASCII,
            )
            if triggers
            else None
        )
        # The same conditions for RE2 over bytes (`segments_with_triggers`): a linear-time
        # automaton, about twenty times faster than `re` on text full of digits. Latin-1, so
        # every byte is one character: the classes are ASCII and any other byte is in none.
        branches = [f"[{cls}]{rest}" for cls, rest in triggers]
        if self._run is not None:
            branches.append(f"[{_TOKEN_CHARS}]{{15}}")
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1
        self._triggers = re2.compile("|".join(branches).encode(), options) if branches else None

    def _may_match(self, text: str) -> bool:
        if self._prefilter is not None and self._prefilter.search(text) is not None:
            return True
        return self._run is not None and len(text) >= 15 and self._run.search(text) is not None

    def _iter(self, text: str) -> Iterator[Match]:
        regex = self._regex
        if regex is None or not self._may_match(text):
            return
        search = regex.search
        detector_of = self._detector_of
        pos = 0
        while True:
            m = search(text, pos)
            if m is None:
                return
            marker = m.lastgroup
            assert marker is not None
            detector = detector_of[marker]
            validate = detector.validate
            span = m.span() if validate is None else validate(m)
            name = detector.name
            if span is None:
                name, span = self._fallback(text, m.start(), marker)
                if span is None:
                    pos = m.start() + 1
                    continue
            yield Match(name, span[0], span[1])
            pos = span[1] if span[1] > m.start() else m.start() + 1

    def _fallback(self, text: str, pos: int, marker: str) -> tuple[str, Span | None]:
        for detector, pattern in self._fallbacks[marker]:
            m = pattern.match(text, pos)
            if m is not None:
                span = m.span() if detector.validate is None else detector.validate(m)
                if span is not None:
                    return detector.name, span
        return "", None

    def segments_with_triggers(self, text: bytes, starts: Sequence[int]) -> list[int]:
        """Which segments of `text` (the i-th from `starts[i]` to the next start or the end)
        hold one of the detectors' necessary conditions, in order: the others get no match
        from `scan`.

        The bytes are read as Latin-1 and hold a segment's cells (UTF-8, as `mask_cell`
        decodes them), each followed by NUL. A segment holds a trigger here exactly when one of
        its cells would pass `_may_match`: a trigger is a run of ASCII characters of fixed
        classes, none of which is NUL, so none spans two cells, and an ASCII byte stands for the
        same character in both decodings while any other byte or character is in no class.
        """
        found: list[int] = []
        if self._triggers is None or not starts:
            return found
        search = self._triggers.search
        pos = starts[0]
        while (m := search(text, pos)) is not None:
            i = bisect_right(starts, m.start()) - 1
            found.append(i)
            if i + 1 == len(starts):
                break
            pos = starts[i + 1]
        return found

    def scan(self, text: str) -> list[Match]:
        """Validated, non-overlapping matches, left to right."""
        return list(self._iter(text))

    def has_any(self, text: str) -> bool:
        """Whether `text` holds at least one validated match."""
        return next(self._iter(text), None) is not None


_CLEAN_CELLS = (
    "Alice Johnson",
    "Springfield",
    "2024-03-01",
    "42",
    "true",
    "order shipped to customer",
    "ACME Corp",
    "3.14159",
    "pending review",
    "Lorem ipsum dolor sit amet",
)
_DIRTY_CELLS = (
    "jane.doe@example.com",
    "card 4242 4242 4242 4242",
    "+1 (555) 123-4567",
    "DE89 3704 0044 0532 0130 00",
    "ssn 123-45-6789",
    "from 192.168.1.23",
    "AKIAIOSFODNN7EXAMPLE",
    "token=9f8A7b6C5d4E3f2A1b0C",
    "md5" + "0123456789abcdef" * 2,
    "call 555-867-5309 now",
)


def scanner_for(names: Iterable[str]) -> Scanner:
    """The Scanner of this set of detectors, built once per set and shared: a Scanner never
    changes after it is built, and building one (its expressions compiled) took 0.7-1.5 ms for
    `credit_card` and `us_ssn` and 4-10 ms for all of them, which every connection whose rules
    carry detectors would pay at start-up."""
    return _scanner_of(frozenset(names))


@functools.lru_cache(maxsize=64)
def _scanner_of(names: frozenset[str]) -> Scanner:
    return Scanner(names)


def bench(n: int) -> dict[str, float]:
    """Cells per second of `Scanner(ALL).scan` over n clean and n dirty short cells."""
    scanner = Scanner(ALL)
    result: dict[str, float] = {}
    for label, sample in (("clean", _CLEAN_CELLS), ("dirty", _DIRTY_CELLS)):
        cells = [sample[i % len(sample)] for i in range(n)]
        scan = scanner.scan
        started = time.perf_counter()
        for cell in cells:
            scan(cell)
        result[f"{label}_cells_per_s"] = n / (time.perf_counter() - started)
    return result
