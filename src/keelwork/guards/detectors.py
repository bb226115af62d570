"""The detectors behind :class:`keelwork.guards.pii.PiiScanner`: one per kind of value.

Each finds candidates with a precompiled pattern and keeps only those that validate (checksum,
issuer range, registry length, address parser, context words). Each pattern starts with a
look-behind on its own character class, so a match is only tried where a run begins and long
inputs stay linear. Each detector first asks :class:`Facts` (computed once per text) whether
its kind of value can be there at all, so a text without digits or cue words costs little.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple

import phonenumbers

Found = tuple[str, int, int, int]
"""(type, start, end, rank): a lower rank is the more specific type and wins a tie in length."""

R_SECRET, R_CARD, R_IBAN, R_SSN, R_EMAIL, R_IP, R_DOB, R_PHONE, R_TOKEN, R_PERSON = range(10)
_DIGITS = "0123456789"


class Facts(NamedTuple):
    """What every detector's pre-check needs, computed once per text.

    ``lower`` has the same length as the text, so a cue pattern can run on it case-sensitively
    (about twice as fast as ``(?i)``) and its positions still index the text.
    """

    lower: str
    digits: int

    @classmethod
    def of(cls, text: str) -> Facts:
        lower = text.lower()
        if len(lower) != len(text):  # a few characters (e.g. "İ") lower to two
            lower = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        return cls(lower, sum(map(text.count, _DIGITS)))


# A "." may precede the local part: a JSON path such as `$.jo@x.com` must not hide an address.
_EMAIL = re.compile(
    r"(?<![\w%+\-])[\w%+\-](?:[\w.%+\-]{0,62}[\w%+\-])?"
    r"@(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w\-])"
)


def emails(text: str, facts: Facts) -> Iterator[Found]:
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        if ".." not in m.group():
            yield "EMAIL", m.start(), m.end(), R_EMAIL


# Payment cards: 13-19 digits, optionally in groups split by one space or dash.
_CARD = re.compile(r"(?<![\w\-.,/+])[0-9]{2,}(?:[ \-][0-9]{2,}){0,5}(?![\w\-]|[.,/][0-9])", re.A)
# (digits of the prefix, lowest, highest, allowed lengths): the major networks' IIN ranges.
_IIN: Final[tuple[tuple[int, int, int, frozenset[int]], ...]] = (
    (1, 4, 4, frozenset({13, 16, 19})),  # Visa
    (2, 51, 55, frozenset({16})),  # Mastercard
    (4, 2221, 2720, frozenset({16})),  # Mastercard 2-series
    (2, 34, 34, frozenset({15})),  # American Express
    (2, 37, 37, frozenset({15})),
    (4, 6011, 6011, frozenset(range(16, 20))),  # Discover
    (3, 644, 649, frozenset(range(16, 20))),
    (2, 65, 65, frozenset(range(16, 20))),
    (4, 3528, 3589, frozenset(range(16, 20))),  # JCB
    (3, 300, 305, frozenset(range(14, 20))),  # Diners Club
    (2, 36, 36, frozenset(range(14, 20))),
    (2, 38, 39, frozenset(range(16, 20))),
    (2, 62, 62, frozenset(range(16, 20))),  # UnionPay
    (2, 50, 50, frozenset(range(13, 20))),  # Maestro
    (2, 56, 58, frozenset(range(13, 20))),
    (2, 63, 63, frozenset(range(13, 20))),
    (2, 67, 67, frozenset(range(13, 20))),
    (4, 2200, 2204, frozenset(range(16, 20))),  # Mir
    (2, 60, 60, frozenset({16})),  # RuPay
    (2, 81, 82, frozenset({16})),
    (3, 508, 508, frozenset({16})),
    (4, 9792, 9792, frozenset({16})),  # Troy
)


def luhn_ok(digits: str) -> bool:
    """The Luhn check every payment card number satisfies (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iin_ok(digits: str) -> bool:
    n = len(digits)
    return any(n in lens and lo <= int(digits[:width]) <= hi for width, lo, hi, lens in _IIN)


def _card_grouping(raw: str) -> bool:
    """How cards are written: one separator kind; groups of 4 (Amex and Diners: 4-6-5, 4-6-4);
    the last group 2 to 5 long. An order number such as 112-3456789-1234567 is not a card."""
    if " " in raw and "-" in raw:
        return False
    groups = raw.replace("-", " ").split(" ")
    if len(groups) == 1:
        return True
    return (
        len(groups[0]) == 4
        and all(len(g) in (4, 6) for g in groups[1:-1])
        and 2 <= len(groups[-1]) <= 5
    )


def cards(text: str, facts: Facts) -> Iterator[Found]:
    if facts.digits < 13:
        return
    for m in _CARD.finditer(text):
        raw = m.group()
        if not _card_grouping(raw):
            continue
        digits = raw.replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and _iin_ok(digits):
            yield "CARD", m.start(), m.end(), R_CARD


# IBAN lengths by country (SWIFT IBAN registry).
_IBAN_LENGTHS: Final[Mapping[str, int]] = MappingProxyType({
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
})  # fmt: skip
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?= ?[A-Za-z0-9]{4})", re.A)


def iban_ok(compact: str) -> bool:
    """Country length and the ISO 7064 mod-97 check of an IBAN without spaces."""
    compact = compact.upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ibans(text: str, facts: Facts) -> Iterator[Found]:
    if facts.digits < 2:
        return
    n = len(text)
    for m in _IBAN_START.finditer(text):
        length = _IBAN_LENGTHS.get(m.group()[:2].upper())
        if length is None:
            continue
        # Take exactly the country's length of characters, allowing single spaces between.
        i, got, chars = m.end(), 4, [m.group()]
        while got < length and i < n:
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                chars.append(ch)
                got += 1
                i += 1
            elif ch == " " and i + 1 < n and text[i + 1].isascii() and text[i + 1].isalnum():
                i += 1
            else:
                break
        if got == length and not (i < n and text[i].isalnum()) and iban_ok("".join(chars)):
            yield "IBAN", m.start(), i, R_IBAN


_SSN = re.compile(r"(?<![\w\-])([0-9]{3})-([0-9]{2})-([0-9]{4})(?![\w\-]|[.,][0-9])", re.A)
_SSN_CUED = re.compile(
    r"\b(?:ssn|ss\#|social\s+security(?:\s+(?:number|no\.?|\#))?)\s*(?:is|:|\#|no\.?)?\s*"
    r"(?<![\w\-])([0-9]{3})[ ]?([0-9]{2})[ ]?([0-9]{4})(?![\w\-]|[.,][0-9])"
)


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """Rules the SSA never breaks: no 000, 666 or 9xx area, no 00 group, no 0000 serial."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return f"{area}{group}{serial}" not in ("078051120", "219099999")  # published samples


def ssns(text: str, facts: Facts) -> Iterator[Found]:
    if facts.digits < 9:
        return
    patterns = [_SSN] if "-" in text else []  # digits and dashes: the same in facts.lower
    if "ssn" in facts.lower or "ss#" in facts.lower or "social" in facts.lower:
        patterns.append(_SSN_CUED)
    for pattern in patterns:
        for m in pattern.finditer(facts.lower):
            if ssn_ok(m.group(1), m.group(2), m.group(3)):
                yield "US_SSN", m.start(1), m.end(3), R_SSN


_IPV4 = re.compile(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w]|\.[0-9])", re.A)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?(?:%[0-9A-Za-z]{1,16})?(?![\w:])",
    re.A,
)
_VERSION_CUE = re.compile(r"\b(?:v|ver|version|build|release|firmware|rev|os)\.?\s*$")


def ips(text: str, facts: Facts) -> Iterator[Found]:
    if facts.digits >= 4 and text.count(".") >= 3:
        for m in _IPV4.finditer(text):
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            if not _VERSION_CUE.search(facts.lower, max(0, m.start() - 12), m.start()):
                yield "IP_ADDRESS", m.start(), m.end(), R_IP
    if text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            raw = m.group()
            if sum(1 for g in raw.split("%")[0].split(":") if g) < 2:
                continue
            try:
                ipaddress.IPv6Address(raw)
            except ValueError:
                continue
            yield "IP_ADDRESS", m.start(), m.end(), R_IP


_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = re.compile(
    r"(?<![\w/.\-])(?:"
    r"(?P<a>[0-9]{1,2})[/.\-](?P<b>[0-9]{1,2})[/.\-](?P<y>[0-9]{4}|[0-9]{2})"
    r"|(?P<iy>[0-9]{4})[/.\-](?P<im>[0-9]{1,2})[/.\-](?P<id>[0-9]{1,2})"
    rf"|(?P<dd>[0-9]{{1,2}})(?:st|nd|rd|th)?(?:\s+of)?\s+{_MONTH}(?:,?\s+(?P<dy>[0-9]{{4}}))?"
    rf"|{_MONTH}\s+(?P<md>[0-9]{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(?P<my>[0-9]{{4}}))?"
    r")(?![\w/]|[.\-][0-9])"
)
_DOB_CUE = re.compile(
    r"(?<![\w.])(?:d\.\s?o\.\s?b\.?|dob\b|date\s+of\s+birth\b|birth\s*date\b|birthday\b"
    r"|b-?day\b|born\b(?:\s+on\b)?|geburtsdatum\b|fecha\s+de\s+nacimiento\b"
    r"|date\s+de\s+naissance\b|n[ée]e?\s+le\b)"
)
# What may stand between a cue and its date: punctuation and a few small words, nothing else.
_DOB_GAP = re.compile(
    r"(?:[\s:=,(\[\-\u2013\u2014]|\b(?:is|was|on|the|of|my|me|i|am|in|at|it's|its|as|be|to)\b)*"
)
_DOB_WINDOW = 64
_DOB_STEMS: Final = (
    "dob", "d.o.b", "birth", "born", "bday", "b-day", "geburt", "nacimiento", "naissance", " le ",
)  # fmt: skip
_MONTH_STEMS: Final = (
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
)  # fmt: skip


def _date_ok(m: re.Match[str]) -> bool:
    g = m.groupdict()
    if g["a"] is not None:
        a, b, y = int(g["a"]), int(g["b"]), g["y"]
        if not ((1 <= a <= 31 and 1 <= b <= 12) or (1 <= a <= 12 and 1 <= b <= 31)):
            return False
        return len(y) == 2 or 1900 <= int(y) <= 2100
    if g["iy"] is not None:
        return 1900 <= int(g["iy"]) <= 2100 and 1 <= int(g["im"]) <= 12 and 1 <= int(g["id"]) <= 31
    day = g["dd"] if g["dd"] is not None else g["md"]
    year = g["dy"] if g["dd"] is not None else g["my"]
    return 1 <= int(day) <= 31 and (year is None or 1900 <= int(year) <= 2100)


def dobs(text: str, facts: Facts) -> Iterator[Found]:
    if facts.digits == 0 and not any(m in facts.lower for m in _MONTH_STEMS):
        return
    if not any(c in facts.lower for c in _DOB_STEMS):
        return
    low = facts.lower  # every pattern here is written in lower case
    for cue in _DOB_CUE.finditer(low):
        after = _DATE.search(low, cue.end(), cue.end() + _DOB_WINDOW)
        if after and _date_ok(after) and _DOB_GAP.fullmatch(low, cue.end(), after.start()):
            yield "DATE_OF_BIRTH", after.start(), after.end(), R_DOB
            continue
        before = None
        for m in _DATE.finditer(low, max(0, cue.start() - _DOB_WINDOW), cue.start()):
            before = m
        if before and _date_ok(before) and _DOB_GAP.fullmatch(low, before.end(), cue.start()):
            yield "DATE_OF_BIRTH", before.start(), before.end(), R_DOB


# Issuer prefixes, longest first where one is a prefix of another.
SECRET_PREFIXES: Final[tuple[str, ...]] = (
    "-----BEGIN", "sk-ant-", "sk-proj-", "sk-svcacct-", "sk-admin-", "sk_live_", "rk_live_",
    "sk_test_", "rk_test_", "whsec_", "github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "glpat-", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "AKIA", "ASIA", "AIza", "eyJ",
    "kw_", "hf_", "npm_", "SG.", "pypi-", "sk-",
)  # fmt: skip
_SECRET = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:"
    r"sk-ant-[A-Za-z0-9_\-]{20,300}"
    r"|sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,300}"
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,247}"
    r"|whsec_[A-Za-z0-9+/=]{24,}"
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|gh[pousr]_[A-Za-z0-9]{36,251}"
    r"|glpat-[A-Za-z0-9_\-]{20,}"
    r"|xox[bpars]-[A-Za-z0-9\-]{10,250}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"
    r"|AIza[A-Za-z0-9_\-]{35}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"
    r"|kw_[A-Za-z0-9_\-]{32,125}"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"
    r"|pypi-AgE[A-Za-z0-9_\-]{50,}"
    r")(?![A-Za-z0-9_\-])",
    re.A,
)
_PEM = re.compile(
    r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s]|\\[nr])*"
    r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"
)
_SECRET_STEMS: Final = (
    "sk-", "sk_", "rk_", "whsec_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
    "glpat-", "xox", "AKIA", "ASIA", "AIza", "eyJ", "kw_", "hf_", "npm_", "SG.", "pypi-",
    "-----BEGIN",
)  # fmt: skip
_STATED_STEMS: Final = ("pass", "pwd", "pin", "cvv", "cvc", "security code")
# One C-level pass each instead of a Python loop over the stems.
_SECRET_STEM = re.compile("|".join(map(re.escape, _SECRET_STEMS)))
_STATED_STEM = re.compile("|".join(map(re.escape, _STATED_STEMS)))
# A password, passcode, PIN or card security code stated in the text.
_STATED_SECRET = re.compile(
    r"\b(?:password|passwd|pass\s?code|pwd|pin(?:\s+(?:code|number))?|cvv2?|cvc2?"
    r"|security\s+code)\b\s*(?:is|was|=|:)\s*[\"']?([^\s\"'<>]{3,64})"
)
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9+/_=\-])[A-Za-z0-9+/_\-]{24,512}={0,2}(?![A-Za-z0-9+/_=\-])", re.A
)
# Object IDs of payment and commerce APIs look random but are not secrets.
_PUBLIC_ID = re.compile(
    r"(?:ch|pi|pm|py|re|in|ii|cus|cs|txn|tx|evt|req|acct|prod|price|sub|src|tok|seti|card|ba"
    r"|po|tr|ipi|si|il|dp|du|prv|file|link|inv|ord|order|ref|id|trx|payout|refund|charge)_",
    re.A,
)


def _random_looking(token: str) -> bool:
    """Long, all three character classes, class changes often, high per-character entropy."""
    if not (any(c.isupper() for c in token) and any(c.islower() for c in token)):
        return False
    if not any(c.isdigit() for c in token) or _PUBLIC_ID.match(token):
        return False
    if "/" in token:  # a path has several word-like segments; base64 rarely has two
        words = sum(
            1 for seg in token.split("/") if len(seg) > 2 and seg.isalpha() and seg.islower()
        )
        if words >= 2:
            return False
    body = token.rstrip("=")
    classes = [0 if c.isupper() else 1 if c.islower() else 2 if c.isdigit() else 3 for c in body]
    changes = sum(1 for x, y in itertools.pairwise(classes) if x != y)
    if changes < 0.3 * (len(body) - 1):
        return False
    counts: dict[str, int] = {}
    for c in body:
        counts[c] = counts.get(c, 0) + 1
    n = len(body)
    entropy = -sum(k / n * math.log2(k / n) for k in counts.values())
    return entropy >= 3.5


def _stated_ok(value: str) -> bool:
    if len(value) < 3 or not value.strip("*xX•#."):  # too short, or already masked
        return False
    if value.isdigit():
        return len(value) <= 12
    return any(c.isdigit() for c in value) or any(not c.isalnum() for c in value)


def secrets(text: str, facts: Facts) -> Iterator[Found]:
    if _SECRET_STEM.search(text):
        yield from _issued_secrets(text)
    if _STATED_STEM.search(facts.lower):
        for m in _STATED_SECRET.finditer(facts.lower):
            value = text[m.start(1) : m.end(1)].rstrip(".,;:)")
            if _stated_ok(value.rstrip("!?")):
                yield "SECRET", m.start(1), m.start(1) + len(value), R_SECRET
    for m in _TOKEN.finditer(text):
        if _random_looking(m.group()):
            yield "SECRET", m.start(), m.end(), R_TOKEN


def _issued_secrets(text: str) -> Iterator[Found]:
    for m in _SECRET.finditer(text):
        raw = m.group()
        if raw.startswith("sk-") and not raw.startswith("sk-ant-"):
            body = raw[3:]
            if not (
                any(c.isupper() for c in body)
                and any(c.islower() for c in body)
                and any(c.isdigit() for c in body)
            ):
                continue
        yield "SECRET", m.start(), m.end(), R_SECRET
    if "-----BEGIN" in text:
        for m in _PEM.finditer(text):
            yield "SECRET", m.start(), m.end(), R_SECRET


_UP, _LO = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
_NAME_WORD = rf"(?:[{_UP}](?:[{_LO}]+|'[{_UP}][{_LO}]+)(?:-[{_UP}][{_LO}]+)?|[A-Z]\.)"
_NAME = rf"{_NAME_WORD}(?:[ ]{_NAME_WORD}){{0,2}}"
_PERSON_CUED = re.compile(
    r"(?:\b(?:[Mm]y\s+(?:full\s+|legal\s+)?name\s+is|[Mm]y\s+name's|[Nn]ame\s*:"
    r"|(?:[Aa]ccount|[Cc]ard)\s*holder(?:\s+name)?\s*:?|[Ss]igned\s*:?)\s+"
    r"|\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+)"
    rf"(?P<name>{_NAME})(?![\w\-])"
)
_PERSON_SIGNOFF = re.compile(
    r"(?:^|(?<=\s))(?:(?:[Bb]est|[Kk]ind|[Ww]arm)\s+)?(?:[Rr]egards|[Tt]hanks|[Tt]hank\s+you"
    r"|[Cc]heers|[Ss]incerely|[Bb]est)\s*,\s*\n?\s*"
    rf"(?P<name>{_NAME})\s*[.!]?\s*$",
    re.M,
)
_NOT_NAMES: Final[frozenset[str]] = frozenset(
    str.split(
        "I A The This That It My Me We You Please Can Could Would Will Should Is Are Was Why What "
        "When Where How Who Which Hi Hello Hey Dear Thanks Thank Regards Best Sir Madam Customer "
        "Support Team Bank Card Account Visa Mastercard Monzo Revolut Apple Google Paypal Amazon "
        "Yes No Not Ok Okay Sorry Help Again Also And But So Just Now Today Tomorrow Yesterday "
        "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"
    )
)


def persons(text: str, facts: Facts) -> Iterator[Found]:
    patterns = []
    if any(c in facts.lower for c in ("name", "holder", "signed")) or any(
        h in text for h in ("Mr", "Ms", "Mx", "Dr", "Prof", "Miss")
    ):
        patterns.append(_PERSON_CUED)
    if any(c in facts.lower for c in ("regards", "thank", "cheers", "sincerely", "best")):
        patterns.append(_PERSON_SIGNOFF)
    for pattern in patterns:
        for m in pattern.finditer(text):
            words = m.group("name").split(" ")
            while words and words[-1].rstrip(".") in _NOT_NAMES:
                words.pop()
            if not words or words[0].rstrip(".") in _NOT_NAMES or len(words[0]) < 2:
                continue
            start = m.start("name")
            yield "PERSON", start, start + len(" ".join(words)), R_PERSON


# Where phone numbers could be: digits with phone punctuation in between (not "/": dates).
# A run longer than one number ("(415) 555-0100 (415) 555-0199") is split into numbers later.
_PHONE_RUN = re.compile(
    r"(?<![\w+\-.,/])(?:\+[ ]?|\()?[0-9][0-9 ().\-]{0,62}[0-9](?![\w]|[.,/][0-9])", re.A
)
_NON_SPACE = re.compile(r"\S+")
# A number right after these words is a reference of some kind, not someone's phone.
_NOT_A_PHONE_CUE = re.compile(
    r"\b(?:order|tracking|parcel|shipment|waybill|invoice|reference|ref|transaction|txn"
    r"|receipt|confirmation|case|ticket|account|acct|iban|id)"
    r"(?:\s*(?:number|no\.?|code|id|nr|\#))?(?:\s*(?:is|was|:|=))?[\s\#:.\-]*\Z"
)


MATCHER_BUDGET: Final = 2_000
"""Matcher calls per text; past it (some 0.2 s of work), plausible numbers count unconfirmed."""
SPLIT_BUDGET: Final = 4_096
"""Pieces of over-long digit runs examined per text (each costs up to 15 pattern checks)."""


class PhoneFinder:
    """libphonenumber's matcher, asked only where a valid number could be.

    The matcher costs 50-500 microseconds of CPU per call, so it only sees runs of 7 to 15
    digits that no more specific detector has claimed, that follow no reference-number cue,
    that are not shaped like an IPv4 address, and whose digits fit the general number pattern
    of the default region (with or without its trunk prefix) or, after ``+``, of the country
    code they start with: a necessary condition for a valid number, checked with one regex
    instead of the matcher's many. The matcher gets one character of context either side
    (its own boundary rules need it) and yields each number's E.164 form too, so the same
    number written two ways gets one placeholder.
    """

    __slots__ = ("_by_code", "_codes", "_home", "_idd", "region")

    def __init__(self, region: str) -> None:
        self.region = region
        self._codes = frozenset(map(str, phonenumbers.COUNTRY_CODE_TO_REGION_CODE))
        self._by_code: dict[str, tuple[str, re.Pattern[str]] | None] = {}
        home = phonenumbers.PhoneMetadata.metadata_for_region(region) if region != "ZZ" else None
        self._home = _general_pattern(home)
        idd = home.international_prefix if home is not None else None
        self._idd = idd if idd and idd.isdigit() else None

    def _code(self, code: str) -> tuple[str, re.Pattern[str]] | None:
        """The trunk prefix and general pattern of a country calling code, on first use."""
        if code not in self._by_code:
            metadata = phonenumbers.PhoneMetadata
            metas = [
                metadata.metadata_for_nongeo_region(int(code))
                if r == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
                else metadata.metadata_for_region(r)
                for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(code), ())
            ]
            plans = [p for p in map(_general_pattern, metas) if p is not None]
            self._by_code[code] = (
                (
                    next((t for t, _ in plans if t), ""),
                    re.compile("|".join(f"(?:{p.pattern})" for _, p in plans)),
                )
                if plans
                else None
            )
        return self._by_code[code]

    def _plausible(self, candidate: str) -> bool:
        digits = "".join(c for c in candidate if "0" <= c <= "9")
        if not 7 <= len(digits) <= 15 or _DOTTED_QUAD.fullmatch(candidate):
            return False
        if candidate.startswith("+"):
            for k in (1, 2, 3):  # country codes are prefix-free
                if digits[:k] in self._codes:
                    plan = self._code(digits[:k])
                    return plan is None or _fits(plan, digits[k:])
            return False
        if self._idd is not None and digits.startswith(self._idd):
            return True
        return self._home is not None and _fits(self._home, digits)

    def _candidates(self, text: str) -> Iterator[tuple[int, int]]:
        """Plausible numbers: whole runs of 7-15 digits, or, when a longer run splits entirely
        into plausible numbers (longest first; a piece after a number's first has two digits or
        more), those numbers. Up to SPLIT_BUDGET pieces, plus one per 8 characters, are examined
        per text; past that (a dump of space-separated numbers) long runs are left unsplit."""
        budget = SPLIT_BUDGET + len(text) // 8
        for run in _PHONE_RUN.finditer(text):
            raw = run.group()
            if sum(map(raw.count, _DIGITS)) <= 15:
                if self._plausible(raw):
                    yield run.span()
                continue
            if budget <= 0:
                continue
            pieces = [
                (m.start(), m.end(), sum(map(m.group().count, _DIGITS)))
                for m in _NON_SPACE.finditer(raw)
            ]
            budget -= len(pieces)
            found: list[tuple[int, int]] = []
            i = 0
            while i < len(pieces):
                best, total = -1, 0
                for j in range(i, len(pieces)):
                    total += pieces[j][2]
                    if total > 15 or (j > i and pieces[j][2] < 2):
                        break
                    if self._plausible(raw[pieces[i][0] : pieces[j][1]]):
                        best = j
                if best < 0:
                    break  # a piece no number can hold: a long reference, not a list
                found.append((run.start() + pieces[i][0], run.start() + pieces[best][1]))
                i = best + 1
            else:
                yield from found

    def find(self, text: str, facts: Facts, claimed: list[Found]) -> Iterator[tuple[Found, str]]:
        """Phone numbers with their E.164 form ("" for one taken past the matcher budget)."""
        if facts.digits < 7:
            return
        budget = MATCHER_BUDGET
        for s, e in self._candidates(text):
            if any(cs <= s and e <= ce for _, cs, ce, _ in claimed):
                continue
            if _NOT_A_PHONE_CUE.search(facts.lower, max(0, s - 40), s):
                continue
            if budget == 0:  # a huge text full of numbers: redact the plausible ones unasked
                yield ("PHONE", s, e, R_PHONE), ""
                continue
            budget -= 1
            lo = max(0, s - 1)
            window = text[lo : e + 3]  # the matcher looks for ":mm" after a time stamp
            for m in phonenumbers.PhoneNumberMatcher(window, self.region):
                e164 = phonenumbers.format_number(m.number, phonenumbers.PhoneNumberFormat.E164)
                yield ("PHONE", lo + m.start, lo + m.end, R_PHONE), e164


_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


def _general_pattern(
    meta: phonenumbers.PhoneMetadata | None,
) -> tuple[str, re.Pattern[str]] | None:
    if meta is None or meta.general_desc is None or not meta.general_desc.national_number_pattern:
        return None
    return meta.national_prefix or "", re.compile(meta.general_desc.national_number_pattern)


def _fits(plan: tuple[str, re.Pattern[str]], digits: str) -> bool:
    trunk, pattern = plan
    if pattern.fullmatch(digits):
        return True
    return (
        bool(trunk) and digits.startswith(trunk) and bool(pattern.fullmatch(digits[len(trunk) :]))
    )


Detector = Callable[[str, Facts], Iterator[Found]]
DETECTORS: Final[Mapping[str, Detector]] = MappingProxyType(
    {
        "SECRET": secrets,
        "CARD": cards,
        "IBAN": ibans,
        "US_SSN": ssns,
        "EMAIL": emails,
        "IP_ADDRESS": ips,
        "DATE_OF_BIRTH": dobs,
        "PERSON": persons,
    }
)
"""Every detector but the phone finder (which needs a region and runs last), by type."""
