"""What every match of a regular expression must begin with, read off the compiled pattern.

The injection heuristics run dozens of regexes over texts of up to tens of thousands of
characters. A regex engine's own search tries each position; knowing the literals a match must
start with (``leading_literals``), or the places a match must start near (``anchors_of``),
lets the caller look only where a match can begin. The analysis reads Python's regex parser
(``re._parser``, private): where it is missing or a pattern is too wide to tell, every
function here answers "cannot tell" and callers fall back to a full search.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

# a regex that begins with an item at most this many characters wide (an anchor or one
# character, say) is searched from the literals that follow that item
_MAX_LEAD = 1


def anchors_of(
    regex: re.Pattern[str], starts: tuple[str, ...], space: str | None = None
) -> tuple[int, tuple[str, ...]]:
    r"""``(lead, anchors)``: every match of ``regex`` starts at most ``lead`` characters before
    a place where one of ``anchors`` occurs, and looking for those places in a long text is
    quicker than the regex engine's own search; ``(0, ())`` when it is not.

    The anchors are the start literals (``starts``), or, when they all begin with
    punctuation (rare in text), their first characters: one ``str.find`` scan each (a
    memchr) instead of one per literal, and few places. One start literal is left to the
    regex engine, which looks for it as quickly. A regex that begins with a narrow item
    (``(?:^|\s)``) has no start literal; the literals after that item are its anchors.
    """
    lead = 0
    if not starts:
        lead, starts = _after_lead(regex, space)
        if not starts:
            return 0, ()
    firsts = {s[0] for s in starts}
    if not any(c.isalnum() or c.isspace() for c in firsts):
        return lead, tuple(sorted(firsts))
    return (lead, starts) if len(starts) > 1 or lead else (0, ())


def _after_lead(regex: re.Pattern[str], space: str | None) -> tuple[int, tuple[str, ...]]:
    """The width of a narrow first item of ``regex`` and the literals every match of what
    follows it begins with; ``(0, ())`` when the regex begins otherwise."""
    if regex.flags & re.IGNORECASE:
        return 0, ()
    try:
        parser: Any = importlib.import_module("re._parser")
        parsed = parser.parse(regex.pattern, regex.flags)
        if parsed.state.flags & re.IGNORECASE or not parsed.data:
            return 0, ()
        _, widest = parser.SubPattern(parsed.state, [parsed.data[0]]).getwidth()
        if widest > _MAX_LEAD:
            return 0, ()
        return widest, _tidy(_prefixes(list(parsed.data[1:]), space))
    except (ImportError, AttributeError, TypeError, ValueError):
        return 0, ()


def line_start_variant(regex: re.Pattern[str]) -> re.Pattern[str] | None:
    """For a multi-line regex that begins with ``^`` (every match begins a line: at 0 or
    right after a newline), the same regex with that ``^`` replaced by a newline; None for
    any other regex.

    A text holds a match of the regex exactly when the regex matches at 0 or the variant
    matches somewhere. The variant begins with a literal character, so the regex engine
    jumps from newline to newline instead of trying the anchor at every character.
    """
    if not regex.flags & re.MULTILINE or not regex.pattern.startswith("^"):
        return None
    try:
        parser: Any = importlib.import_module("re._parser")
        first = parser.parse(regex.pattern, regex.flags).data[0]
    except (ImportError, AttributeError, IndexError, TypeError, ValueError):
        return None
    if (str(first[0]), str(first[1])) != ("AT", "AT_BEGINNING"):
        return None
    return re.compile(r"\n" + regex.pattern[1:], regex.flags)


def unanchor(pattern: str) -> str:
    r"""Drop ``\b`` where a top-level alternative starts with one; ``heuristic_hits`` checks
    that boundary itself. A leading ``\b`` stops ``re`` from skipping ahead to the characters
    a match can start with, which makes a search several times slower on long texts."""
    out: list[str] = []
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            at_start = depth == 0 and not in_class and (not out or out[-1] == "|")
            if at_start and pattern[i + 1] == "b":
                i += 2
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        out.append(ch)
        i += 1
    return "".join(out)


# Literal prefixes are at most this long and a pattern has at most this many; beyond, the
# prefixes are cut short (still a correct answer, only a less selective one).
_MAX_LITERAL = 12
_MAX_STARTS = 64


def leading_literals(regex: re.Pattern[str], space: str | None = None) -> tuple[str, ...]:
    """Literals of which every match of ``regex`` begins with one, shortest first; () when the
    regex does not say (a match may start with a character class, a wildcard, or be empty).
    ``space``: the only whitespace character the texts searched hold, if there is one (the
    folded view's whitespace is single spaces), so that ``\\s`` stands for it alone.

    Read from the regex's parse tree (``re._parser``, the parser ``re.compile`` itself uses),
    so the answer follows the pattern as written rather than a list kept beside it. Used
    only to skip positions where no match can start: an empty answer costs speed, never a
    verdict.
    """
    if regex.flags & re.IGNORECASE:
        return ()
    try:
        parser: Any = importlib.import_module("re._parser")
        parsed = parser.parse(regex.pattern, regex.flags)
        if parsed.state.flags & re.IGNORECASE:
            return ()
        found = _prefixes(list(parsed.data), space)
    except (ImportError, AttributeError, TypeError, ValueError):
        return ()
    return _tidy(found)


def _tidy(found: set[str] | None) -> tuple[str, ...]:
    """Literals cut to ``_MAX_LITERAL`` characters, those that extend another dropped (they
    add no place the other misses), shortest first."""
    if not found:
        return ()
    cut = {literal[:_MAX_LITERAL] for literal in found}
    kept = {a for a in cut if not any(b != a and a.startswith(b) for b in cut)}
    return tuple(sorted(kept, key=lambda s: (len(s), s)))


def _prefixes(items: list[Any], space: str | None) -> set[str] | None:
    """Non-empty literals every match of the parsed sequence ``items`` starts with; None when
    unknown. Zero-width items (anchors, lookarounds) are stepped over; a literal or a small
    set of characters is extended by what follows it."""
    if not items:
        return None
    op, arg = items[0]
    name, rest = str(op), items[1:]
    if name in ("AT", "ASSERT", "ASSERT_NOT"):
        return _prefixes(rest, space)
    if name == "BRANCH":
        out: set[str] = set()
        for alternative in arg[1]:
            found = _prefixes(list(alternative.data) + rest, space)
            if found is None:
                return None
            out |= found
        return out
    if name == "SUBPATTERN":
        _, add_flags, del_flags, inner = arg
        return None if add_flags or del_flags else _prefixes(list(inner.data) + rest, space)
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        least, _, inner = arg
        once = _prefixes(list(inner.data), space)
        if once is None or least > 0:
            return once
        after = _prefixes(rest, space)
        return None if after is None else once | after
    chars = _characters(name, arg, space)
    if chars is None:
        return None
    tails = _prefixes(rest, space)
    if tails is None or len(tails) * len(chars) > _MAX_STARTS:
        return chars
    return {c + tail for c in chars for tail in tails}


def _characters(name: str, arg: Any, space: str | None) -> set[str] | None:
    """The characters one LITERAL or small IN item matches (``\\s`` as ``space``, when
    given); None for anything wider."""
    if name == "LITERAL":
        return {chr(arg)}
    if name != "IN":
        return None
    chars: set[str] = set()
    for op, value in arg:
        if str(op) == "LITERAL":
            chars.add(chr(value))
        elif str(op) == "RANGE" and value[1] - value[0] < 16:
            chars.update(map(chr, range(value[0], value[1] + 1)))
        elif str(op) == "CATEGORY" and str(value) == "CATEGORY_SPACE" and space is not None:
            chars.add(space)
        else:
            return None
    return chars
