"""Normalisation, the screen's first layer: undo the cheap disguises before anything reads the text.

NFKC, homoglyphs folded to ASCII, invisible and bidi controls removed (their presence is itself
a signal), hidden Unicode-tag text revealed, and embedded base64 / hex / URL-encoded payloads
decoded so the decoded text is screened too. Kept apart from the patterns and the classifier
because both read its output, and because the disguises it undoes are a concern of their own.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
import urllib.parse
from collections.abc import Iterator, Set
from dataclasses import dataclass

# Work caps: what one call may cost, whatever it is given.
MAX_CHARS = 100_000  # longer inputs are screened on their first MAX_CHARS characters
MAX_DECODED = 6  # decoded payloads screened per input
MAX_DECODE_DEPTH = 2  # base64 inside base64, no further
MAX_CANDIDATE = 8_192  # longest encoded run that is decoded

# Lookalike letters from other scripts folded to the ASCII letter they imitate (NFKC already
# folds fullwidth, circled and mathematical alphanumerics; it leaves these alone).
_CONFUSABLES = {
    # Cyrillic
    "\u0430": "a", "\u0432": "b", "\u0435": "e", "\u0451": "e", "\u043a": "k", "\u043c": "m",
    "\u043d": "h",
    "\u043e": "o", "\u0440": "p", "\u0441": "c", "\u0442": "t", "\u0443": "y", "\u0445": "x",
    "\u0456": "i",
    "\u0457": "i", "\u0458": "j", "\u0455": "s", "\u0501": "d", "\u051b": "q", "\u051d": "w",
    "\u04bb": "h",
    "\u04cf": "l", "\u0410": "A", "\u0412": "B", "\u0415": "E", "\u041a": "K", "\u041c": "M",
    "\u041d": "H",
    "\u041e": "O", "\u0420": "P", "\u0421": "C", "\u0422": "T", "\u0423": "Y", "\u0425": "X",
    "\u0406": "I",
    "\u0408": "J", "\u0405": "S", "\u0500": "D", "\u04ae": "Y",
    # Armenian
    "\u0578": "n", "\u057d": "u", "\u0585": "o", "\u0581": "g",
    # Greek
    "\u03b1": "a", "\u03b2": "b", "\u03b3": "y", "\u03b5": "e", "\u03b9": "i", "\u03ba": "k",
    "\u03bd": "v",
    "\u03bf": "o", "\u03c1": "p", "\u03c4": "t", "\u03c5": "u", "\u03c7": "x", "\u03c9": "w",
    "\u0391": "A",
    "\u0392": "B", "\u0395": "E", "\u0396": "Z", "\u0397": "H", "\u0399": "I", "\u039a": "K",
    "\u039c": "M",
    "\u039d": "N", "\u039f": "O", "\u03a1": "P", "\u03a4": "T", "\u03a5": "Y", "\u03a7": "X",
    # Latin small capitals and other IPA lookalikes (same script, NFKC keeps them)
    "\u0261": "g", "\u1d00": "a", "\u0299": "b", "\u1d04": "c", "\u1d05": "d", "\u1d07": "e",
    "\ua730": "f",
    "\u0262": "g", "\u029c": "h", "\u026a": "i", "\u1d0a": "j", "\u1d0b": "k", "\u029f": "l",
    "\u1d0d": "m",
    "\u0274": "n", "\u1d0f": "o", "\u1d18": "p", "\u0280": "r", "\ua731": "s", "\u1d1b": "t",
    "\u1d1c": "u",
    "\u1d20": "v", "\u1d21": "w", "\u028f": "y", "\u1d22": "z", "\u0131": "i", "\u0237": "j",
}  # fmt: skip
# lookalikes outside Greek, Cyrillic and Armenian are Latin-script letters themselves
_LATIN_LOOKALIKES = frozenset(k for k in _CONFUSABLES if not 0x0370 <= ord(k) < 0x0590)
_FOLD = str.maketrans(_CONFUSABLES)
_LOOKALIKE = re.compile("[" + "".join(_CONFUSABLES) + "]")

_BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x061C))
_INVISIBLE = frozenset(
    chr(c)
    for c in (
        0x00AD, 0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0,
        *range(0x180B, 0x180E), *range(0x200B, 0x2010), *range(0x2060, 0x2065),
        *range(0x206A, 0x2070), *range(0xFE00, 0xFE10), *range(0x1D173, 0x1D17B),
        *range(0xE0100, 0xE01F0),
    )
)  # fmt: skip
# joiners and variation selectors are legitimate inside emoji and in scripts such as Persian
_JOINERS = frozenset("\u200c\u200d\ufe0e\ufe0f")
_TAG_FIRST, _TAG_LAST = 0xE0000, 0xE007F


def _char_class(chars: frozenset[str]) -> str:
    """A regex class of ``chars`` written as ranges: a class listing hundreds of single
    characters (astral ones among them) makes the regex engine test each in turn, ~30x
    slower on every character searched."""
    spans: list[list[int]] = []
    for point in sorted(map(ord, chars)):
        if spans and spans[-1][1] == point - 1:
            spans[-1][1] = point
        else:
            spans.append([point, point])
    return (
        "["
        + "".join(
            re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
            for a, b in spans
        )
        + "]"
    )


_TAGS = frozenset(chr(c) for c in range(_TAG_FIRST, _TAG_LAST + 1))
_HIDDEN_CHARS = _BIDI | _INVISIBLE | _JOINERS | _TAGS
_HIDDEN = re.compile(_char_class(_HIDDEN_CHARS))
# what _strip_invisible handles one at a time: a run of tag characters, or one other character
_HIDDEN_PIECE = re.compile(_char_class(_TAGS) + "+|" + _char_class(_BIDI | _INVISIBLE | _JOINERS))
_BLACK_FLAG = "\U0001f3f4"  # subdivision flags (England, Scotland) are spelled with tag chars

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_SPACED = re.compile(r"\b[a-z](?:[ .\-_*][a-z]){4,}\b")
_QUOTES = (
    ("\u2018", "'"), ("\u2019", "'"), ("\u201b", "'"), ("\u201c", '"'), ("\u201d", '"'),
    ("\u201e", '"'),
)  # fmt: skip
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")

_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_B64_ONLY = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]?){8,}(?![0-9A-Fa-f])")
_HEX_ESCAPES = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){6,}")
_URL_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _byte_classes(**classes: str) -> bytes:
    """A ``bytes.translate`` table mapping the (ASCII) characters of each class to the class's
    one-letter name and every other byte to "x". The regexes these tables stand in for match
    ASCII characters only, so in a text's mask (``_ascii_mask``) a match is a run of class
    letters at the same place: ``bytes.find`` on the mask tells where a match can be, far
    faster than the regex engine reading the text."""
    table = bytearray(b"x" * 256)
    for name, members in classes.items():
        for ch in members:
            table[ord(ch)] = ord(name)
    return bytes(table)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"
# a _SPACED match is >= 5 letters each one separator apart
_SPACED_CLASSES = _byte_classes(a=_LETTERS, s=" .-_*")
_SPACED_MIN = b"asasasasa"
# a base64 run and a hex run are each >= 16 characters of their class in a row
_B64_CLASS = _byte_classes(a=_LETTERS + _LETTERS.upper() + "0123456789+/_-")
_HEX_CLASS = _byte_classes(a="0123456789ABCDEFabcdef :")
_MIN_RUN = 16
# leetspeak tokens: runs of letters ("a") and digits, "@", "$" ("d")
_LEET_CLASSES = _byte_classes(a=_LETTERS, d="0123456789@$")


@dataclass(frozen=True, slots=True)
class Normalized:
    """One input after normalisation: what the classifier reads, what the patterns read, the
    signals the disguises themselves gave away, and the payloads decoded from inside it."""

    text: str
    view: str
    lines: str
    signals: tuple[str, ...] = ()
    decoded: tuple[tuple[str, str], ...] = ()


def non_ascii_characters(text: str) -> frozenset[str]:
    """The distinct non-ASCII characters of ``text``.

    Hidden, lookalike and combining characters are all outside ASCII, and a long text holds
    few distinct ones (quotes, dashes, emoji): whether it holds any of those is read off this
    handful rather than by a regex trying a character class at every character. UTF-8
    writes an ASCII character as one byte below 0x80 and any other as bytes from 0x80 up, so
    deleting the bytes below 0x80 (in C, a byte at a time) leaves the others whole.
    """
    if text.isascii():
        return frozenset()
    data = text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES)
    return frozenset(data.decode("utf-8", "surrogatepass"))


_ASCII_BYTES = bytes(range(0x80))


def _strip_invisible(text: str, chars: Set[str] | None = None) -> tuple[str, set[str], list[str]]:
    """Drop invisible and bidi controls; reveal Unicode-tag text (ASCII hidden in U+E00xx).
    ``chars``: the text's non-ASCII characters (``non_ascii_characters``), when already known."""
    signals: set[str] = set()
    if text.isascii():
        return text, signals, []
    if (chars if chars is not None else non_ascii_characters(text)).isdisjoint(_HIDDEN_CHARS):
        return text, signals, []
    hidden: list[str] = []
    out: list[str] = []
    kept = ""  # the last character kept so far
    last = 0
    for piece in _HIDDEN_PIECE.finditer(text):
        i = piece.start()
        if i > last:
            out.append(text[last:i])
            kept = text[i - 1]
        last = piece.end()
        ch = piece.group()
        if _TAG_FIRST <= ord(ch[0]) <= _TAG_LAST:
            run = "".join(
                chr(ord(c) - _TAG_FIRST) if 0x20 <= ord(c) - _TAG_FIRST < 0x7F else "" for c in ch
            ).strip()
            if run and kept != _BLACK_FLAG:  # subdivision flags are spelled with tags
                hidden.append(run)
        elif ch in _BIDI:
            signals.add("normalize:invisible")
        elif ch == "\ufeff" and i == 0:
            pass
        elif ch not in _JOINERS or _touches_ascii_letter(text, i):
            signals.add("normalize:invisible")
    out.append(text[last:])
    return "".join(out), signals, hidden


def _touches_ascii_letter(text: str, i: int) -> bool:
    before = text[i - 1] if i > 0 else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    return (before.isascii() and before.isalpha()) or (after.isascii() and after.isalpha())


def _fold_homoglyphs(text: str, chars: Set[str] | None = None) -> tuple[str, bool]:
    """Fold lookalikes to ASCII where they disguise Latin text; report mixed-script words.

    A text that is mostly Latin has every lookalike folded (a word spelled wholly in Cyrillic
    lookalikes inside English is still a disguise); a Russian or Greek text keeps its letters,
    and only its mixed-script words are folded. ``chars`` as for ``_strip_invisible``.
    """
    if text.isascii():
        return text, False
    if (chars if chars is not None else non_ascii_characters(text)).isdisjoint(_CONFUSABLES):
        return text, False
    latin = other = 0
    for ch in text:
        if ch.isalpha():
            if ch.isascii() or ch in _LATIN_LOOKALIKES:
                latin += 1
            else:
                other += 1
    mixed = False
    words = re.split(r"(\W+)", text)
    for k, word in enumerate(words):
        if not word or not any(ch in _CONFUSABLES for ch in word):
            continue
        has_ascii = any(ch.isascii() and ch.isalpha() for ch in word)
        foreign = any(ch in _CONFUSABLES and ch not in _LATIN_LOOKALIKES for ch in word)
        if has_ascii and foreign:
            mixed = True
        if has_ascii or latin >= other:
            if foreign and not has_ascii and latin >= other and len(word) > 2:
                mixed = True
            words[k] = word.translate(_FOLD)
    return "".join(words), mixed


def _heuristic_view(text: str, chars: Set[str] | None = None, lines: str | None = None) -> str:
    """Lower-case, accent-free, leetspeak-folded, spaced-out letters joined, one line.
    ``chars`` as for ``_strip_invisible``; ``lines``: the text lower-cased with its quotes
    folded (``_lines``), when already made."""
    chars = chars if chars is not None else non_ascii_characters(text)
    if all(_decomposes_to_itself(ch) for ch in chars):
        # NFKD leaves the text as it is and no mark is left to drop: lower case and folded
        # quotes are all there is to it
        plain = lines if lines is not None else _lines(text, chars)
    else:
        decomposed = unicodedata.normalize("NFKD", _fold_quotes(text, chars))
        # the characters of a decomposed text are those of its characters decomposed
        marks = _COMBINING.search(unicodedata.normalize("NFKD", "".join(chars)))
        plain = (decomposed if marks is None else _COMBINING.sub("", decomposed)).lower()
    plain = _fold_leet(plain)
    if _SPACED_MIN in _ascii_mask(plain, _SPACED_CLASSES):
        plain = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), plain)
    # whitespace runs to one space, none at the ends (str.split and the regex \s agree on
    # what whitespace is)
    return " ".join(plain.split())


def _lines(text: str, chars: Set[str] | None = None) -> str:
    """The text the line-reading patterns read: lower case, curly quotes folded. The quotes
    are folded first: a text whose only non-ASCII characters are curly quotes is then ASCII,
    which ``str.lower`` reads ten times faster. (Either order gives the same text: no
    character's lower case is a curly quote but the quote's own, and straight quotes have
    no case.)"""
    return _fold_quotes(text, chars).lower()


def _fold_quotes(text: str, chars: Set[str] | None = None) -> str:
    """Curly quotes to straight ones (``str.replace`` per quote: ``str.translate`` with a
    dict reads a non-ASCII text a character at a time, ~100x slower). ``chars``: characters
    the text may hold, when known (its quotes are among them)."""
    for curly, straight in _QUOTES:
        if curly in (chars if chars is not None else text):
            text = text.replace(curly, straight)
    return text


def _decomposes_to_itself(ch: str) -> bool:
    """NFKD leaves the character as it is, and it is no combining mark (so it is neither
    decomposed nor reordered, nor dropped as a mark, in any text)."""
    return (
        unicodedata.normalize("NFKD", ch) == ch
        and not unicodedata.combining(ch)
        and _COMBINING.match(ch) is None
    )


def _fold_leet(plain: str) -> str:
    """Leetspeak to letters in every token (a maximal run of ``[a-z0-9@$]``) that holds both a
    letter and one of ``0-9@$``: "1gn0r3" -> "ignore", "2024" unchanged.

    Such a token has a letter next to one of ``0-9@$``; those pairs are found with
    ``bytes.find`` in a one-byte-per-character mask of the text, and each is widened to its
    token; a token is folded once.
    """
    mask = _ascii_mask(plain, _LEET_CLASSES)
    out: list[str] = []
    last = 0
    letter_digit, digit_letter = mask.find(b"ad"), mask.find(b"da")
    while letter_digit >= 0 or digit_letter >= 0:
        hint = min(i for i in (letter_digit, digit_letter) if i >= 0)
        first = mask.rfind(b"x", 0, hint) + 1
        stop = mask.find(b"x", hint)
        stop = len(mask) if stop < 0 else stop
        out += [plain[last:first], plain[first:stop].translate(_LEET)]
        last = stop
        if 0 <= letter_digit < stop:
            letter_digit = mask.find(b"ad", stop)
        if 0 <= digit_letter < stop:
            digit_letter = mask.find(b"da", stop)
    if not out:
        return plain
    out.append(plain[last:])
    return "".join(out)


def _ascii_mask(text: str, table: bytes) -> bytes:
    """``text`` one byte per character (non-ASCII ones as "?", so indices stay those of
    ``text``) mapped through ``table`` (see ``_byte_classes``)."""
    return text.encode("ascii", "replace").translate(table)


def _runs(mask: bytes, least: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each maximal run of "a" in ``mask`` at least ``least`` long."""
    minimum = b"a" * least
    start = mask.find(minimum)
    while start >= 0:  # the leftmost occurrence starts its run
        end = mask.find(b"x", start)
        if end < 0:
            yield start, len(mask)
            return
        yield start, end
        start = mask.find(minimum, end)


def _printable_text(data: bytes) -> str | None:
    """Decoded bytes that read as text (UTF-8, mostly letters and spaces), else None."""
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(decoded) < 6:
        return None
    printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in decoded)
    wordish = sum(ch.isalpha() or ch == " " for ch in decoded)
    if printable < 0.95 * len(decoded) or wordish < 0.6 * len(decoded) or " " not in decoded:
        return None
    return decoded


def _base64_runs(text: str) -> Iterator[re.Match[str]]:
    """The matches of ``_B64_RUN`` in ``text``, in order. A match is a run of >= 16 characters
    of its class (and up to two "=") starting where the run starts, so the regex is tried
    only at the starts of such runs."""
    for start, _ in _runs(_ascii_mask(text, _B64_CLASS), _MIN_RUN):
        match = _B64_RUN.match(text, start)
        if match is not None:
            yield match


def _hex_runs(text: str) -> Iterator[re.Match[str]]:
    """The matches of ``_HEX_RUN`` in ``text``, then those of ``_HEX_ESCAPES``, in order. A
    match of ``_HEX_RUN`` lies inside a run of >= 16 hex digits, spaces and colons, so the
    regex reads only those runs (the characters around a run end a match just as the end of
    the string does)."""
    for start, end in _runs(_ascii_mask(text, _HEX_CLASS), _MIN_RUN):
        yield from _HEX_RUN.finditer(text, start, end)
    if "\\x" in text:
        yield from _HEX_ESCAPES.finditer(text)


def _decode_payloads(text: str) -> list[tuple[str, str]]:
    """Text hidden in base64, hex or URL escapes inside ``text``: (kind, decoded) pairs."""
    found: list[tuple[str, str]] = []
    for match in _base64_runs(text):
        run = match.group(0)
        if len(found) >= MAX_DECODED:
            return found
        if len(run) > MAX_CANDIDATE or not re.search(r"[0-9+/=_-]|[a-z][A-Z]|[A-Z][a-z]", run):
            continue
        padded = run.rstrip("=")
        padded += "=" * (-len(padded) % 4)
        try:
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            continue
        decoded = _printable_text(raw)
        if decoded is None and _B64_ONLY.fullmatch(raw.decode("ascii", "replace")):
            decoded = raw.decode("ascii")  # base64 inside base64: normalize() decodes it again
        if decoded is not None:
            found.append(("base64", decoded))
    for match in _hex_runs(text):
        if len(found) >= MAX_DECODED:
            return found
        digits = re.sub(r"[^0-9A-Fa-f]", "", match.group(0).replace("\\x", ""))
        if len(digits) > MAX_CANDIDATE or len(digits) % 2:
            continue
        decoded = _printable_text(bytes.fromhex(digits))
        if decoded is not None:
            found.append(("hex", decoded))
    if len(found) < MAX_DECODED and len(_URL_ESCAPE.findall(text)) >= 3:
        head = text[: MAX_CANDIDATE * 3]
        unquoted = urllib.parse.unquote(head, errors="replace")
        if (
            unquoted != head
            and _printable_text(unquoted.encode("utf-8", "surrogatepass")) is not None
        ):
            found.append(("url", unquoted))
    return found


def normalize(text: str, _depth: int = 0) -> Normalized:
    """Undo the disguises: NFKC, homoglyphs, invisible characters, encoded payloads."""
    text = text[:MAX_CHARS]
    chars = non_ascii_characters(
        text
    )  # of each step's text in turn: recounted when a step changes it
    visible, signals, hidden = _strip_invisible(text, chars)
    if visible is not text:
        chars = non_ascii_characters(visible)
    nfkc = visible if not chars else unicodedata.normalize("NFKC", visible)
    if nfkc is not visible:
        chars = non_ascii_characters(nfkc)
    folded, mixed = _fold_homoglyphs(nfkc, chars)
    if folded is not nfkc:
        chars = non_ascii_characters(folded)
    if mixed:
        signals.add("normalize:homoglyph")
    decoded: list[tuple[str, str]] = [("unicode-tags", h) for h in hidden]
    if _depth < MAX_DECODE_DEPTH:
        decoded += _decode_payloads(folded)
    nested: list[tuple[str, str]] = []
    for kind, payload in decoded[:MAX_DECODED]:
        inner = normalize(payload, _depth + 1)
        nested.append((kind, inner.text))
        nested.extend(inner.decoded)
    lines = _lines(folded, chars)
    return Normalized(
        text=folded,
        view=_heuristic_view(folded, chars, lines),
        lines=lines,
        signals=tuple(sorted(signals)),
        decoded=tuple(nested[:MAX_DECODED]),
    )
