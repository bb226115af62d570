"""Personal data and secrets in free text: find them, then redact, mask, hash or refuse them.

Every detector validates what it finds instead of trusting a shape: cards pass Luhn and a known
issuer range, IBANs their country's length and mod-97, phone numbers libphonenumber's metadata,
IP addresses :mod:`ipaddress`, SSNs the ranges the SSA never issues. Dates count as a date of
birth only next to words that say so. Secrets are recognised by their issuers' prefixes, and a
bare token only when it is long and random-looking in a way words, IDs and hex hashes are not.

A :class:`PiiScanner` is built once from configuration. :meth:`PiiScanner.scan` returns one
:class:`Span` per character range (overlaps go to the longer, then the more specific type) plus
every other occurrence of a value already found, so a value is never half-redacted.
:meth:`PiiScanner.apply` rewrites the text; a :class:`Numbering` shared by every field of one
request keeps placeholders stable (the same e-mail is ``<EMAIL_1>`` wherever it appears).
:func:`redact_json` does the same for a whole JSON document and never raises on odd input
(except in ``block`` mode, whose job is to raise).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import phonenumbers

from keelwork.errors import GuardError, Violation
from keelwork.guards import detectors

EntityType = Literal[
    "EMAIL",
    "PHONE",
    "CARD",
    "IBAN",
    "US_SSN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "SECRET",
    "PERSON",
]
ENTITY_TYPES: Final[tuple[str, ...]] = get_args(EntityType)
# PERSON is opt-in: a cue-based name detector misses every name said without a cue, and the
# cues themselves ("Dr. Martens", "Thanks, Monzo") misfire often enough to need a decision.
DEFAULT_ENTITIES: Final[frozenset[str]] = frozenset(ENTITY_TYPES) - {"PERSON"}

Mode = Literal["redact", "mask", "hash", "block"]
MODES: Final[tuple[str, ...]] = get_args(Mode)

UNSCANNED: Final = "UNSCANNED"
"""Span type :func:`redact_json` reports for a subtree it replaced without reading it."""

DEFAULT_MAX_DEPTH: Final = 64
MAX_DEPTH_LIMIT: Final = 400  # the walker recurses; Python's default stack allows about 1,000


@dataclass(frozen=True, slots=True)
class Span:
    """One finding: its type and the half-open range ``[start, end)`` of str indexes."""

    type: str
    start: int
    end: int

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "start": self.start, "end": self.end}


@dataclass(frozen=True, slots=True)
class JsonSpan:
    """A finding inside a JSON document: the path of the string (or key) it sits in."""

    path: str
    type: str
    start: int
    end: int
    in_key: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "start": self.start,
            "end": self.end,
        }
        if self.in_key:
            out["in_key"] = True
        return out


class PiiBlockedError(GuardError):
    """The service refuses personal data; names each type and where, never the value."""

    code = "pii.blocked"
    status = 422


class Numbering:
    """Placeholder numbers for one request: the same value gets the same number everywhere.

    Share one instance across every field of a request (and nothing wider: numbers across
    requests would let a reader link them).
    """

    __slots__ = ("_counts", "_numbers")

    def __init__(self) -> None:
        self._numbers: dict[tuple[str, str], int] = {}
        self._counts: dict[str, int] = {}

    def number(self, type_: str, value: str) -> int:
        key = (type_, value)
        n = self._numbers.get(key)
        if n is None:
            n = self._counts.get(type_, 0) + 1
            self._counts[type_] = n
            self._numbers[key] = n
        return n


# --------------------------------------------------------------------------- scanner


class PiiScanner:
    """Finds personal data in text; built once, shared by every request (holds no request state).

    ``entities``: which types to look for (default: every type except PERSON).
    ``default_region``: ISO country whose national phone formats are understood; numbers in
    international form (``+44 ...``) are found whatever it is; ``None`` keeps only those.
    ``hash_key``: the secret for ``hash`` mode; without it a dictionary attack on the hashes of
    all phone numbers or card numbers of an issuer would be cheap.
    """

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        *,
        default_region: str | None = "US",
        hash_key: bytes | str | None = None,
    ) -> None:
        if isinstance(entities, str):
            entities = [entities]
        chosen = DEFAULT_ENTITIES if entities is None else frozenset(e.upper() for e in entities)
        unknown = sorted(chosen - set(ENTITY_TYPES))
        if unknown:
            raise ValueError(
                f"unknown PII entity type(s) {unknown}; choose from {list(ENTITY_TYPES)}"
            )
        region = "ZZ" if default_region is None else default_region.upper()
        if region != "ZZ" and region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"default_region {default_region!r} is not a phone region libphonenumber knows;"
                " use an ISO 3166 alpha-2 code such as 'US', 'GB' or 'DE', or None"
            )
        self.entities: frozenset[str] = chosen
        self.default_region: str | None = None if region == "ZZ" else region
        if hash_key is not None and not hash_key:
            raise ValueError("hash_key is empty; pass a secret of 16 or more random bytes")
        self._hash_key = hash_key.encode() if isinstance(hash_key, str) else hash_key
        self._detectors = tuple(fn for kind, fn in detectors.DETECTORS.items() if kind in chosen)
        self._phones = detectors.PhoneFinder(region) if "PHONE" in chosen else None
        if self._phones is not None:
            _warm_up_phone_metadata()
        # Short texts found clean: roles, model names, JSON keys and error messages recur in
        # every stored row. Only texts with no finding are kept, so it holds no personal data.
        self._clean: dict[str, None] = {}

    # -- finding

    def scan(self, text: str) -> list[Span]:
        """Every finding in ``text``, one per character range, in order of position."""
        return self._find(text)[0]

    def _find(self, text: str) -> tuple[list[Span], dict[str, str]]:
        """The spans, and the E.164 form of each phone number found (raw -> E.164)."""
        if not text or text in self._clean:
            return [], {}
        facts = detectors.Facts.of(text)
        found: list[detectors.Found] = []
        for detect in self._detectors:
            found.extend(detect(text, facts))
        phones: dict[str, str] = {}
        if self._phones is not None:
            hits = list(self._phones.find(text, facts, found))
            for hit, e164 in hits:
                found.append(hit)
                if e164:
                    phones[text[hit[1] : hit[2]]] = e164
        if not found:
            if len(text) <= _CLEAN_CHARS:
                if len(self._clean) >= _CLEAN_ENTRIES:
                    self._clean.clear()
                self._clean[text] = None
            return [], phones
        spans = _resolve(found)
        return (_add_repeats(text, spans) if spans else spans), phones

    # -- rewriting

    def check_mode(self, mode: str) -> None:
        """Raise ``ValueError`` unless this scanner can apply ``mode``."""
        if mode not in MODES:
            raise ValueError(f"unknown PII mode {mode!r}; choose one of {list(MODES)}")
        if mode == "hash" and self._hash_key is None:
            raise ValueError("mode 'hash' needs a secret: PiiScanner(..., hash_key=...)")

    def apply(
        self, text: str, mode: Mode = "redact", numbering: Numbering | None = None
    ) -> tuple[str, list[Span]]:
        """Rewrite every finding in ``text`` by ``mode``; the spans refer to the input text.

        ``block`` raises :class:`PiiBlockedError` if anything is found and returns the text
        unchanged otherwise.
        """
        self.check_mode(mode)
        spans, phones = self._find(text)
        if not spans:
            return text, spans
        if mode == "block":
            raise _blocked_error([("$", s) for s in spans])
        return self.rewrite(
            text, spans, mode, numbering if numbering is not None else Numbering(), phones
        ), spans

    def rewrite(
        self,
        text: str,
        spans: list[Span],
        mode: Mode,
        numbering: Numbering,
        phones: Mapping[str, str] | None = None,
    ) -> str:
        """Replace the given spans (sorted, non-overlapping) by ``mode``'s stand-ins.

        ``phones`` maps a raw phone number to its E.164 form when the caller already has it.
        """
        self.check_mode(mode)
        parts: list[str] = []
        pos = 0
        for span in spans:
            raw = text[span.start : span.end]
            parts.append(text[pos : span.start])
            parts.append(self._stand_in(span.type, raw, mode, numbering, phones))
            pos = span.end
        parts.append(text[pos:])
        return "".join(parts)

    def _stand_in(
        self,
        type_: str,
        raw: str,
        mode: str,
        numbering: Numbering,
        phones: Mapping[str, str] | None,
    ) -> str:
        if mode == "mask":
            return _mask(type_, raw)
        norm = phones.get(raw) if phones and type_ == "PHONE" else None
        if norm is None:
            norm = self._normalise(type_, raw)
        if mode == "hash":
            assert self._hash_key is not None
            digest = hmac.new(self._hash_key, f"{type_}\0{norm}".encode(), hashlib.sha256)
            return f"<{type_}:{digest.hexdigest()[:12]}>"
        return f"<{type_}_{numbering.number(type_, norm)}>"

    def _normalise(self, type_: str, raw: str) -> str:
        """One form per value, so that two spellings of it share a number and a hash."""
        if type_ == "EMAIL":
            return raw.lower()
        if type_ in ("CARD", "IBAN", "US_SSN"):
            return "".join(c for c in raw if c.isalnum()).upper()
        if type_ == "PHONE":
            try:
                number = phonenumbers.parse(raw, self.default_region or "ZZ")
            except phonenumbers.NumberParseException:
                return "".join(c for c in raw if c.isdigit())
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if type_ == "IP_ADDRESS":
            try:
                return str(ipaddress.ip_address(raw.split("%")[0]))
            except ValueError:
                return raw
        if type_ in ("DATE_OF_BIRTH", "PERSON"):
            return " ".join(raw.casefold().split())
        return raw


def _warm_up_phone_metadata() -> None:
    """Load every region's phone metadata now, not on the first request that needs it.

    Loading costs a few milliseconds per region the first time (about 0.1 s and 2 MB for all),
    which would otherwise land on some unlucky request. libphonenumber recompiles its metadata
    patterns whenever they drop out of the ``re`` module's 512-entry cache; versions that offer
    a cache of their own (``re_util.enable_pattern_cache``) get it switched on: the patterns
    come from fixed metadata, so it is bounded.
    """
    enable = getattr(phonenumbers.re_util, "enable_pattern_cache", None)
    if enable is not None:
        enable()
    metadata = phonenumbers.PhoneMetadata
    for region in phonenumbers.SUPPORTED_REGIONS:
        metadata.metadata_for_region(region)
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        metadata.metadata_for_nongeo_region(code)


def _resolve(found: list[detectors.Found]) -> list[Span]:
    """One span per character range: the longer wins, then the more specific type.

    Candidates are cut into clusters of mutually reachable overlaps first, so the greedy
    choice stays local and a text with many findings costs O(k log k), not O(k^2).
    """
    found.sort(key=lambda f: f[1])
    out: list[Span] = []
    cluster: list[detectors.Found] = []
    cluster_end = -1
    for f in found:
        if f[1] >= f[2]:
            continue
        if cluster and f[1] >= cluster_end:
            out.extend(_greedy(cluster))
            cluster = []
        cluster.append(f)
        cluster_end = max(cluster_end, f[2]) if len(cluster) > 1 else f[2]
    out.extend(_greedy(cluster))
    return out


def _greedy(cluster: list[detectors.Found]) -> list[Span]:
    if len(cluster) == 1:
        type_, start, end, _ = cluster[0]
        return [Span(type_, start, end)]
    cluster.sort(key=lambda f: (f[1] - f[2], f[3], f[1]))
    starts: list[int] = []
    kept: list[Span] = []
    for type_, start, end, _ in cluster:
        i = bisect.bisect_left(starts, end)  # kept spans before i start before this one ends
        if i > 0 and kept[i - 1].end > start:  # kept spans are disjoint: only the last can reach
            continue
        starts.insert(i, start)
        kept.insert(i, Span(type_, start, end))
    return kept


# Searching every other occurrence of every value costs len(text) x distinct values; past this
# many characters searched, a huge text with many findings keeps only what detectors found.
_REPEAT_BUDGET: Final = 50_000_000
_CLEAN_CHARS: Final = 64  # longer texts rarely recur verbatim
_CLEAN_ENTRIES: Final = 4096


def _add_repeats(text: str, spans: list[Span]) -> list[Span]:
    """Also mark every other occurrence of a value already found (a repeat the detectors
    missed, e.g. glued to other characters), so no found value survives in the output."""
    values: dict[str, str] = {}
    for s in spans:
        values.setdefault(text[s.start : s.end], s.type)
    if len(values) * len(text) > _REPEAT_BUDGET:
        return spans
    occurrences: list[tuple[int, int, str]] = []
    for value, type_ in values.items():
        i = text.find(value)
        while i != -1:
            occurrences.append((i, i + len(value), type_))
            i = text.find(value, i + 1)
    if len(occurrences) == len(spans):
        return spans  # every occurrence is a finding already
    occurrences.sort(key=lambda o: (o[0], o[0] - o[1]))
    out: list[Span] = []
    k, last_end = 0, -1
    for start, end, type_ in occurrences:
        while k < len(spans) and spans[k].end <= start:
            out.append(spans[k])
            k += 1
        if start < last_end or (k < len(spans) and spans[k].start < end):
            continue
        out.append(Span(type_, start, end))
        last_end = end
    out.extend(spans[k:])
    return out


# --------------------------------------------------------------------------- masks


def _keep_last(raw: str, keep: int) -> str:
    """Every digit but the last ``keep`` becomes ``*``; punctuation stays."""
    total = sum(1 for c in raw if c.isdigit())
    out: list[str] = []
    seen = 0
    for c in raw:
        if c.isdigit():
            seen += 1
            out.append(c if seen > total - keep else "*")
        else:
            out.append(c)
    return "".join(out)


_YEAR = re.compile(r"(?<![0-9])(?:19|20)[0-9]{2}(?![0-9])")
_WORD_CHAR = re.compile(r"\w")


def _mask(type_: str, raw: str) -> str:
    """A stand-in that keeps a hint a support agent can use, never enough to recover it."""
    if type_ == "EMAIL":
        local, _, domain = raw.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if type_ == "CARD":
        digits = "".join(c for c in raw if c.isdigit())
        return "*" * (len(digits) - 4) + digits[-4:]
    if type_ == "IBAN":
        compact = "".join(c for c in raw if c.isalnum()).upper()
        return compact[:2] + "*" * (len(compact) - 6) + compact[-4:]
    if type_ == "US_SSN":
        digits = "".join(c for c in raw if c.isdigit())
        return f"***-**-{digits[-4:]}"
    if type_ == "PHONE":
        return _keep_last(raw, 2)
    if type_ == "IP_ADDRESS":
        if ":" in raw:
            return raw.split(":", 1)[0] + ":*"
        return raw.split(".", 1)[0] + ".*.*.*"
    if type_ == "DATE_OF_BIRTH":  # the year alone is kept, as HIPAA's safe harbour allows
        year = _YEAR.search(raw)
        masked = _WORD_CHAR.sub("*", raw)
        if year:
            masked = masked[: year.start()] + year.group() + masked[year.end() :]
        return masked
    if type_ == "SECRET":
        prefix = next((p for p in detectors.SECRET_PREFIXES if raw.startswith(p)), "")
        return f"{prefix}****"
    if type_ == "PERSON":
        return " ".join(f"{w[:1]}***" for w in raw.split())
    return "****"


# --------------------------------------------------------------------------- errors


def _blocked_error(found: list[tuple[str, Span]]) -> PiiBlockedError:
    """The 422 for ``block`` mode: each finding's type, path and character range."""
    details = [
        Violation(
            path=path,
            rule=f"pii.{span.type.lower()}",
            got={"type": span.type, "start": span.start, "end": span.end},
            message=(
                "not read: nested deeper than the limit, or not printable"
                if span.type == UNSCANNED
                else f"{span.type} at characters {span.start}-{span.end}"
            ),
        )
        for path, span in found
    ]
    kinds = sorted({span.type for _, span in found})
    where = ", ".join(f"{span.type} at {path}[{span.start}:{span.end}]" for path, span in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return PiiBlockedError(
        f"the input contains personal data this service refuses ({', '.join(kinds)}): "
        f"{where}{more}",
        details=details,
    )


# --------------------------------------------------------------------------- JSON and lines

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNSCANNED_VALUE: Final = f"<{UNSCANNED}>"


def _key_path(path: str, key: str) -> str:
    if _IDENT.match(key):
        return f"{path}.{key}"
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{path}["{escaped}"]'


def redact_json(
    value: Any,
    scanner: PiiScanner,
    mode: Mode = "redact",
    numbering: Numbering | None = None,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[Any, list[JsonSpan]]:
    """Apply ``mode`` to every string of a JSON-like value (keys too), sharing one numbering.

    Returns the rewritten value (the input is not changed) and every finding with its JSON
    path (``$.messages[0].content``); paths are built from rewritten keys, so they never carry
    a raw value. Never raises for odd input: non-str keys are turned into strings, tuples and
    sets are read as lists, bytes are decoded, integers of 7+ digits are scanned as text (a
    card number sent as a number is still a card number) and become strings when something is
    found, other objects are scanned as ``str(obj)``. What cannot be read is not passed on: a
    container deeper than ``max_depth``, or an object whose ``str()`` fails, is replaced by
    ``"<UNSCANNED>"`` and reported as an ``UNSCANNED`` span. Strings of any length are scanned
    whole (the cost is linear: about 1 ms per 1,000 characters of ordinary text). In ``block``
    mode every finding, and every unread value, is collected first and one
    :class:`PiiBlockedError` names them all.
    """
    scanner.check_mode(mode)
    if not 0 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be between 0 and {MAX_DEPTH_LIMIT}, got {max_depth}")
    numbering = numbering if numbering is not None else Numbering()
    spans: list[JsonSpan] = []
    # Block mode rewrites nothing, but paths still need raw-free keys: build them as redact.
    rewrite_mode: Mode = "redact" if mode == "block" else mode
    walker = _JsonWalker(scanner, rewrite_mode, numbering, spans, max_depth)
    out = walker.walk(value, (), 0)
    if mode == "block" and spans:
        raise _blocked_error([(s.path, Span(s.type, s.start, s.end)) for s in spans])
    return out, spans


_Path = tuple[str | int, ...]


def _render(path: _Path) -> str:
    """``$.messages[0].content`` from its segments; only done for a finding."""
    out = "$"
    for seg in path:
        out = f"{out}[{seg}]" if isinstance(seg, int) else _key_path(out, seg)
    return out


class _JsonWalker:
    """Paths are kept as segment tuples and only rendered for a finding: most stored values
    hold none, and building every path string cost more than scanning the short keys."""

    __slots__ = ("max_depth", "mode", "numbering", "scanner", "spans")

    def __init__(
        self,
        scanner: PiiScanner,
        mode: Mode,
        numbering: Numbering,
        spans: list[JsonSpan],
        max_depth: int,
    ) -> None:
        self.scanner = scanner
        self.mode = mode
        self.numbering = numbering
        self.spans = spans
        self.max_depth = max_depth

    def text(self, s: str, path: _Path, in_key: bool = False) -> str:
        found, phones = self.scanner._find(s)
        if not found:
            return s
        where = _render(path)
        self.spans.extend(JsonSpan(where, f.type, f.start, f.end, in_key) for f in found)
        return self.scanner.rewrite(s, found, self.mode, self.numbering, phones)

    def unscanned(self, path: _Path) -> str:
        self.spans.append(JsonSpan(_render(path), UNSCANNED, 0, 0))
        return _UNSCANNED_VALUE

    def walk(self, value: Any, path: _Path, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value, path)
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            if -1_000_000 < value < 1_000_000:
                return value
            as_text = _as_text(value)  # None past Python's 4,300-digit str() limit
            if as_text is None:
                return self.unscanned(path)
            new = self.text(as_text, path)
            return value if new == as_text else new
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            if depth >= self.max_depth:
                return self.unscanned(path)
            if isinstance(value, Mapping):
                return self.mapping(value, path, depth)
            return [self.walk(v, (*path, i), depth + 1) for i, v in enumerate(value)]
        if isinstance(value, bytes | bytearray | memoryview):
            return self.text(bytes(value).decode("utf-8", "replace"), path)
        as_text = _as_text(value)
        return self.unscanned(path) if as_text is None else self.text(as_text, path)

    def mapping(self, value: Mapping[Any, Any], path: _Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = k if isinstance(k, str) else _as_text(k)
            if key is None:
                key = _UNSCANNED_VALUE
            found, phones = self.scanner._find(key)
            new_key = key
            if found:
                new_key = self.scanner.rewrite(key, found, self.mode, self.numbering, phones)
            base, n = new_key, 2
            while new_key in out:  # two keys that mask alike must not overwrite each other
                new_key = f"{base}#{n}"
                n += 1
            child = (*path, new_key)
            if found:  # the path names the rewritten key, never the raw one
                where = _render(child)
                self.spans.extend(JsonSpan(where, f.type, f.start, f.end, True) for f in found)
            out[new_key] = self.walk(v, child, depth + 1)
        return out


def _as_text(value: object) -> str | None:
    """``str(value)``, or None for an object that cannot print itself (it is not passed on)."""
    try:
        return str(value)
    except Exception:
        return None


def scan_lines(
    lines: Iterable[str],
    scanner: PiiScanner,
    mode: Mode = "redact",
    numbering: Numbering | None = None,
) -> Iterator[dict[str, Any]]:
    """One ``{"spans": [...], "redacted": "..."}`` per line, for ``keelwork scan pii``.

    One trailing newline (``\\n`` or ``\\r\\n``) is dropped from each line; offsets are str
    indexes into the line without it. Placeholders are numbered per line unless a shared
    ``numbering`` is given. ``block`` has no meaning for a report and is refused.
    """
    scanner.check_mode(mode)
    if mode == "block":
        raise ValueError("scan_lines reports findings; use mode 'redact', 'mask' or 'hash'")
    for line in lines:
        if line.endswith("\n"):
            line = line[:-2] if line.endswith("\r\n") else line[:-1]
        spans, phones = scanner._find(line)
        redacted = (
            scanner.rewrite(
                line, spans, mode, numbering if numbering is not None else Numbering(), phones
            )
            if spans
            else line
        )
        yield {"spans": [s.as_dict() for s in spans], "redacted": redacted}
