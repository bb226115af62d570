"""Heuristics, the screen's second layer: weighted patterns for the known attack families.

Instruction override, persona hijack, system-prompt extraction, fake chat delimiters,
exfiltration links, ...: each pattern is written to need the attack's *structure* rather than
one trigger word, so "please ignore my previous email" passes. The patterns read the views that
normalisation produces; they live apart from it so that the attack catalogue can be read (and
grown) on its own.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import numpy.typing as npt

from keelwork.guards.normalize import Normalized
from keelwork.guards.regex_literals import (
    anchors_of,
    leading_literals,
    line_start_variant,
    unanchor,
)


@dataclass(frozen=True, slots=True)
class Pattern:
    """One weighted pattern of an attack family. ``needles`` are literal substrings of which
    at least one must occur before the regex runs (most texts skip most patterns), and ``on``
    names the view it reads: "view" (folded, one line) or "lines" (lower-cased, lines kept,
    no leetspeak folding, so URLs and delimiters survive). ``starts`` are literals that every
    match begins with, read off the regex itself (see ``leading_literals``); empty when it
    cannot tell. ``after_newline`` is set for a regex whose every match begins a line (see
    ``line_start_variant``)."""

    family: str
    weight: float
    needles: tuple[str, ...]
    regex: re.Pattern[str]
    on: str = "view"
    starts: tuple[str, ...] = field(default=())
    after_newline: re.Pattern[str] | None = None
    # where a match may start in a long text: at most ``lead`` characters before a place
    # where one of ``anchors`` occurs (see ``anchors_of``); () to leave the search to the
    # regex engine
    anchors: tuple[str, ...] = ()
    lead: int = 0


# the folded view's only whitespace character (normalisation joins its words with single spaces)
VIEW_SPACE = " "


def _p(
    family: str, weight: float, needles: str | tuple[str, ...], pattern: str, on: str = "view"
) -> Pattern:
    words = tuple(needles.split("|")) if isinstance(needles, str) else needles
    regex = re.compile(unanchor(pattern), re.MULTILINE)
    space = VIEW_SPACE if on == "view" else None
    starts = leading_literals(regex, space)
    lead, anchors = anchors_of(regex, starts, space)
    variant = line_start_variant(regex)
    return Pattern(family, weight, words, regex, on, starts, variant, anchors, lead)


_VN = (
    "ignor", "disregard", "forget", "skip", "bypass", "overrid", "overwrit", "neglect", "discard",
    "abandon", "dismiss", "drop", "erase", "nullif", "scrap", "throw away", "set aside",
    "pay no attention", "follow", "never mind", "nevermind",
)  # fmt: skip
_VERB = (
    r"(?:ignore|ignoring|disregard|forget|skip|bypass|override|overwrite|neglect|discard|"
    r"abandon|dismiss|drop|erase|nullify|scrap|throw away|set aside|pay no attention to|"
    r"do not follow|don't follow|dont follow|stop following|no longer follow|never mind|nevermind)"
)
_DET = r"(?:(?:all|any|every|each|the|these|those|your|of|everything|that|this|such|its)\s+){0,3}"
_SCOPE = (
    r"(?:previous(?:ly)?|prior|preceding|above|earlier|former|foregoing|original|initial|old|"
    r"existing|default|given|current|system|provided|aforementioned|preexisting|pre-existing)"
)
_STRONG_OBJ = (
    r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines?|commands?|orders|"
    r"constraints|restrictions|programming|guidance|policies|training|system prompt)"
)
_WEAK_OBJ = r"(?:text|information|content|input|messages?|conversation|tasks?|context)"
_NOT_MINE = r"(?!\s+(?:i|we)\s+(?:gave|sent|provided|wrote|left|made|mentioned|added|set))"
_EVERB = (
    r"(?:reveal|show|print|display|output|repeat|recite|tell|give|list|leak|dump|share|expose|"
    r"spell out|write out|write down|return|provide|paste|copy|echo|summari[sz]e|translate|"
    r"encode|what (?:is|are|were|was))"
)
_SECRET_OBJ = (
    r"(?:system\s*(?:prompt|message|instructions?)|pre-?prompt|initial\s+(?:prompt|instructions?)|"
    r"original\s+(?:prompt|instructions?)|hidden\s+(?:prompt|instructions?|rules)|"
    r"developer\s+(?:message|prompt|instructions?)|"
    r"instructions\s+(?:above|you (?:were|have been) given)|"
    r"prompt\s+above|secret\s+(?:instructions?|key|password)|"
    r"(?:starting|initiali[sz]ation|init)\s+(?:instructions?|prompt|string))"
)
_NOT_SUPPORT = r"(?!\s+(?:for|on|about|regarding|to|when|if|how|of))"

PATTERNS: tuple[Pattern, ...] = (
    # instruction override, English
    _p(
        "override", 0.85, _VN,
        rf"\b{_VERB}\s+{_DET}{_SCOPE}(?:\s+(?:and|or|&|"
        rf"/)\s+\w+)?\s+(?:\w+\s+)?{_STRONG_OBJ}\b{_NOT_MINE}",
    ),
    _p(
        "override", 0.85, _VN,
        rf"\b{_VERB}\s+{_DET}{_STRONG_OBJ}\s+(?:above|before|so far|given to you|you (?:were|"
        rf"have been) given|you received|up to (?:now|this point)|until now)",
    ),
    _p(
        "override", 0.75, _VN,
        rf"\b{_VERB}\s+(?:(?:all|any|every)\s+(?:of\s+)?)?(?:your|all|any|"
        rf"every)\s+(?:\w+\s+)?{_STRONG_OBJ}\b{_NOT_MINE}",
    ),
    _p(
        "override", 0.45, _VN,
        rf"\b{_VERB}\s+(?:(?:all|any|every|the|these|those|"
        rf"of)\s+){{1,3}}{_SCOPE}\s+{_WEAK_OBJ}\b{_NOT_MINE}",
    ),
    _p(
        "override", 0.75, _VN,
        rf"\b{_VERB}\s+(?:all|everything|anything)\s+(?:above|before|prior|previous|"
        rf"(?:that\s+)?(?:(?:was|were|has been|i)\s+)?(?:said|written|told|stated|given)|"
        rf"you (?:were|have been) told|so far|up to (?:now|this point))",
    ),
    _p(
        "override", 0.6, _VN,
        rf"\b{_VERB}\s+(?:all\s+of\s+|all\s+)?the\s+(?:above|previous|preceding)(?:\s*[.,:;!]|"
        rf"\s+and\b|$)",
    ),
    _p(
        "override", 0.7, "now ",
        r"\bnow\s+(?:new|further|different|the following)\s+(?:tasks?|"
        r"instructions?)\s+(?:follow|apply)",
    ),
    _p(
        "override", 0.5, "new ",
        r"\b(?:here are|these are|follow|obey)\s+(?:your|my|the)\s+new\s+(?:instructions|"
        r"rules|orders|directives)\b",
    ),
    _p(
        "override", 0.4, "your new",
        r"\byour\s+new\s+(?:task|instructions?|role|purpose|goal|objective)\s+(?:is|are)\b",
    ),
    # instruction override, German / Spanish / French / Italian / Portuguese (accents folded)
    _p(
        "override", 0.85, "ignorier|vergiss|vergess|missacht|uberspring|verwirf|verwerf",
        r"\b(?:ignorier(?:e|en|t)?|vergiss|vergessen|missachte(?:n)?|uberspring(?:e|en)?|"
        r"verwirf|verwerfen)\s+(?:sie\s+)?(?:(?:alle|alles|die|deine|ihre|jegliche|samtliche|"
        r"einfach)\s+){0,2}(?:vorherige[nmrs]?|bisherige[nmrs]?|obige[nmrs]?|"
        r"vorangegangene[nmrs]?|vorige[nmrs]?|fruhere[nmrs]?|ursprungliche[nmrs]?|"
        r"vorhergehende[nmrs]?)\s+(?:anweisung(?:en)?|instruktion(?:en)?|befehle|regeln|"
        r"vorgaben|informationen|aufgaben|auftrage|prompts?)",
    ),
    _p(
        "override", 0.75, "vergiss|vergesst|vergessen|ignorier",
        r"\b(?:vergiss|vergesst|vergessen sie|ignoriere|ignorieren sie)\s+(?:(?:einfach|bitte|"
        r"nun|jetzt)\s+)?(?:alles|alle)\b\s*,?\s*(?:davor|zuvor|bisher(?:ige)?|vorher(?:ige)?|"
        r"was|bis hierhin|oben|andere|gesagte)",
    ),
    _p(
        "override", 0.7, "bisherigen|vorherigen|obigen",
        r"\b(?:alle\s+)?(?:bisherigen|vorherigen|obigen)\s+(?:informationen|"
        r"anweisungen)\b.{0,60}\b(?:irrelevant|ungultig|vergessen|ignorieren|egal)",
    ),
    _p(
        "override", 0.7, "neue",
        r"\b(?:nun|jetzt)\s+(?:folgen|folgt|kommen|kommt)\s+(?:neue|eine neue|"
        r"weitere)\s+(?:aufgaben?|anweisungen?)",
    ),
    _p(
        "override", 0.85, "ignor|olvid|descarta|omite|sigas",
        r"\b(?:ignora|ignore|ignorar|ignoren|olvida|olvide|olvidar|olviden|descarta|omite|"
        r"no sigas)\s+(?:(?:todas?|todos|las|los|tus|sus|cualquier)\s+){1,3}(?:instrucciones|"
        r"indicaciones|ordenes|reglas|directrices)(?:\s+(?:anteriores|previas|de arriba|dadas|"
        r"iniciales|originales))?",
    ),
    _p(
        "override", 0.75, "olvid|ignor",
        r"\b(?:olvida|olvide|ignora|ignore)\s+todo\s+(?:lo\s+)?(?:anterior|que te (?:dije|"
        r"han dicho)|lo que)",
    ),
    _p(
        "override", 0.85, "ignore|oublie|tiens|tenez|abstraction",
        r"\b(?:ignore[zr]?|oublie[zr]?|ne (?:tiens|tenez) pas compte d(?:e|es|')|fai(?:s|"
        r"tes) abstraction d(?:e|es|'))\s*(?:(?:toutes?|tous|les|tes|vos|"
        r"ces)\s+){1,2}(?:instructions?|consignes?|regles|directives?|"
        r"ordres)(?:\s+(?:precedentes?|anterieures?|ci-dessus|initiales?|donnees?))?",
    ),
    _p(
        "override", 0.75, "oublie",
        r"\boublie[zr]?\s+tout\s+ce\s+qu(?:i precede|e (?:je|l'on|on) t'a)",
    ),
    _p(
        "override", 0.85, "ignora|dimentica",
        r"\b(?:ignora|dimentica)\s+(?:tutte\s+)?le\s+istruzioni(?:\s+precedenti)?\b",
    ),
    _p(
        "override", 0.85, "ignor|esqueca",
        r"\b(?:ignore|ignora|esqueca)\s+(?:todas\s+)?as\s+instrucoes(?:\s+anteriores)?\b",
    ),
    # persona / role hijack
    _p(
        "persona", 0.45, "you are",
        r"\byou\s+are\s+(?:now|no longer)\b(?!\s+(?:connected|chatting|talking|speaking|"
        r"logged|signed|transferred|being|in (?:the )?queue|subscribed|registered|enrolled|"
        r"eligible|able|ready|verified|set|all set|on hold|on the|through|at|number))",
    ),
    _p(
        "persona", 0.35, "from now on|from this moment|henceforth|starting now|rest of",
        r"\b(?:from now on|from this moment on|henceforth|starting now|"
        r"for the rest of (?:this|our) conversation),?\s+(?:you|your)\b",
    ),
    _p(
        "persona", 0.85, "act|behave|respond|answer|reply|speak|role",
        r"\b(?:act|behave|respond|answer|reply|speak|roleplay|role-play)\s+(?:as|"
        r"like)\s+(?:an?\s+)?(?:dan|stan|dude|aim|jailbroken|unfiltered|uncensored|"
        r"unrestricted|unlimited|evil|amoral|immoral|rogue|unaligned|unethical)\b",
    ),
    _p(
        "persona", 0.8, "pretend|imagine|suppose",
        r"\b(?:pretend|imagine|suppose)\s+(?:that\s+)?(?:you\s+are|you're|"
        r"to\s+be)\b.{0,80}\b(?:no|without|free (?:of|from)|not bound by|"
        r"any)\s+(?:\w+\s+)?(?:restrictions|rules|filters|limits|limitations|guidelines|"
        r"ethics|morals|censorship|boundaries)",
    ),
    _p(
        "persona", 0.8, "mode|prompt|anything now|jailbr",
        r"\bdo anything now\b|\b(?:dan|stan|dude|aim)\s+(?:mode|prompt)\b|\bjailbr(?:eak|"
        r"oken)\s+(?:mode|ai|version|response)|\byou\s+are\s+(?:now\s+)?jailbroken",
    ),
    _p(
        "persona", 0.7, "mode",
        r"\bdeveloper\s+mode\s+(?:enabled|output|response|activated|is on)\b|\b(?:simulate|"
        r"enable|activate|enter|switch to)\s+(?:the\s+)?(?:dan|developer|dev|god|debug|admin|"
        r"sudo|unrestricted|jailbreak|evil)\s+mode\b(?=.{0,80}\b(?:you|your|respond|response|"
        r"answer|chatgpt|ai|assistant|model|output)\b)",
    ),
    _p(
        "persona", 0.5, "character",
        r"\b(?:stay|remain|keep)\s+in\s+character\b|\b(?:never|don't|"
        r"do not)\s+break\s+character\b",
    ),
    _p(
        "persona", 0.6, "bist du|du bist",
        r"\b(?:nun|jetzt|ab jetzt|ab sofort|von nun an)\s+bist\s+du\b|\bdu\s+bist\s+(?:jetzt|"
        r"nun|ab sofort)\b",
    ),
    _p(
        "persona", 0.5, "stell|tu so",
        r"\bstell(?:en sie)?\s+(?:dir|sich)\s+vor,?\s+(?:du bist|sie sind|dass du)\b|"
        r"\btu\s+so,?\s+als\s+(?:ob|wurdest|warst|bist)\b",
    ),
    _p(
        "persona", 0.6, "eres|seras|actuas|tu es|vous etes",
        r"\b(?:ahora|a partir de ahora)\s+(?:eres|seras|actuas)\b|\b(?:tu es|"
        r"vous etes)\s+(?:maintenant|desormais)\b",
    ),
    # system-prompt extraction
    _p(
        "extraction", 0.8, "prompt|instruction|system|secret|developer|init",
        rf"\b{_EVERB}\s+(?:me\s+|us\s+)?(?:all\s+|back\s+)?(?:of\s+)?(?:your|the)\s+(?:(?:full|"
        rf"entire|complete|original|initial|hidden|secret|exact|verbatim|whole|real|internal|"
        rf"confidential|first|starting|underlying)\s+){{0,3}}{_SECRET_OBJ}",
    ),
    _p(
        "extraction", 0.6, "your",
        rf"\b{_EVERB}\s+(?:me\s+)?(?:all\s+)?(?:of\s+)?your\s+(?:(?:full|entire|complete|"
        rf"original|initial|hidden|secret|exact)\s+)?(?:instructions|prompt|directives|"
        rf"programming|configuration){_NOT_SUPPORT}",
    ),
    _p("extraction", 0.3, "system", r"\bsystem\s*prompt\b"),
    _p(
        "extraction", 0.55, "above|before this|so far|from the",
        r"\b(?:repeat|print|output|return|copy|echo|recite)\s+(?:back\s+)?(?:all\s+|"
        r"everything\s+|the\s+)?(?:(?:text|words|lines|content|instructions|messages?|"
        r"conversation)\s+)?(?:above|before this|so far|from the (?:beginning|start))",
    ),
    _p(
        "extraction", 0.6, "you",
        r"\bwhat\s+(?:were|are|have)\s+you\s+(?:been\s+)?(?:told|instructed|programmed)\b",
    ),
    _p(
        "extraction", 0.6, "you are|my instructions|i was instructed",
        r"\bbeginning with [\"']?you are\b|\bstart(?:ing)?\s+(?:your\s+(?:answer|reply|"
        r"response)\s+)?with\s+[\"']?(?:my instructions|i was instructed|you are)",
    ),
    # fake chat delimiters / format injection (read with lines kept)
    _p(
        "delimiter", 0.8, ("<|",),
        r"<\|(?:im_start|im_end|endoftext|system|user|assistant|end|start_header_id|"
        r"end_header_id|eot_id|begin_of_text)\|>", on="lines",
    ),
    _p(
        "delimiter", 0.6, "[|<",
        r"\[/?inst\]|<<\s*/?sys\s*>>|\[/?system\]|</?system>|</?(?:sys|instructions?|admin|"
        r"developer)>", on="lines",
    ),
    _p(
        "delimiter", 0.6, "##",
        r"(?:^|\s)#{2,}\s*(?:system|instructions?|new instructions|admin|developer|"
        r"assistant)\b\s*(?:prompt|message)?\s*:?", on="lines",
    ),
    _p(
        "delimiter", 0.45, ":",
        r"^\s*(?:system|assistant|admin|developer)\s*(?:message|prompt|note)?\s*:", on="lines",
    ),
    _p(
        "delimiter", 0.55, ":",
        r"\b(?:system|admin)\s+(?:message|notice|instruction|command)s?\s*:",
    ),
    _p(
        "delimiter", 0.6, "end|begin|start",
        r"\b(?:end|begin|start)\s+(?:of\s+)?(?:the\s+)?(?:system|user|untrusted)\s+(?:prompt|"
        r"input|message|instructions?)\b",
    ),
    # exfiltration cues (URLs read without leet folding)
    _p(
        "exfiltration", 0.6, "](",
        r"!\[[^\]]{0,100}\]\(\s*<?(?:https?:)?//[^)\s]{1,300}"
        r"[?&][^)\s=]{1,50}=[^)\s]{0,300}\)",
        on="lines",
    ),
    _p(
        "exfiltration", 0.7, "//",
        r"(?:https?:)?//\S*(?:\[(?:data|info|secret|password|conversation|history|summary|"
        r"chat|input|query|key|[a-z_]{3,20})\]|\{[a-z_]{2,30}\}|\$[a-z_]{3,20})", on="lines",
    ),
    _p(
        "exfiltration", 0.5, "url|link|query",
        r"\b(?:append|add|include|insert|encode|put)\b.{0,60}\b(?:to|in|into|as)\s+(?:the\s+|"
        r"a\s+)?(?:url|link|query string|query parameter|image (?:url|link|source))\b",
    ),
    _p(
        "exfiltration", 0.5, "send|post|forward|email|upload|exfiltrat|transmit|leak",
        r"\b(?:send|post|forward|email|upload|exfiltrate|transmit|leak)\s+(?:all\s+|the\s+|"
        r"our\s+|this\s+|your\s+|any\s+)?(?:(?:entire|full|whole|previous|"
        r"prior)\s+)?(?:conversation|chat history|chat log|messages|history|context|"
        r"system prompt|secrets?|credentials|api keys?|user data|personal data)\s+to\b",
    ),
    _p("exfiltration", 0.4, "<img|javascript:", r"<img\s[^>]*src\s*=|\bjavascript:", on="lines"),
    # obfuscated instructions
    _p(
        "obfuscation", 0.6, "decode|decrypt|deobfusc|unscramble|reverse",
        r"\b(?:decode|decrypt|deobfuscate|unscramble|reverse)\b.{0,60}\b(?:and|"
        r"then)\s+(?:then\s+)?(?:follow|execute|obey|run|perform|comply|carry out|act on)\b",
    ),
    _p(
        "obfuscation", 0.4, "base|rot|hex|morse|caesar",
        r"\b(?:base ?64|rot ?13|hex(?:adecimal)?|morse|caesar)\b.{0,40}\b(?:follow|execute|"
        r"obey|comply with)\b",
    ),
    # safety / policy evasion
    _p(
        "evasion", 0.8, "safety|content|ethic|moral|moderation|openai|anthropic|usage|censor",
        r"\b(?:ignore|bypass|disable|turn off|override|circumvent|disregard|forget|remove|"
        r"deactivate|break|violate|skip)\s+(?:(?:all|any|your|the|its|"
        r"their)\s+){0,2}(?:safety|content|ethical|ethics|moral|moderation|openai|anthropic|"
        r"usage|censorship)\s*(?:filters?|polic(?:y|ies)|guidelines?|restrictions?|protocols?|"
        r"measures|rules|training|guardrails?|constraints|limitations|programming|checks?)",
    ),
    _p(
        "evasion", 0.55, "ethical|moral|safety|content|censorship",
        r"\b(?:without|no|free (?:of|from)|not bound by|unbound by|"
        r"exempt from)\s+(?:any\s+)?(?:ethical|moral|safety|content|"
        r"censorship)\s+(?:restrictions|filters|limitations|guidelines|rules|constraints|"
        r"boundaries|concerns)\b",
    ),
    _p(
        "evasion", 0.6, "unfiltered|uncensored|unrestricted|unbounded",
        r"\b(?:unfiltered|uncensored|unrestricted|unbounded)\s+(?:ai|assistant|model|chatbot|"
        r"mode|responses?|answers?|output)\b",
    ),
    _p(
        "evasion", 0.45, "openai|anthropic",
        r"\b(?:openai|anthropic)(?:'s)?\s+(?:content\s+)?(?:polic(?:y|ies)|guidelines|rules)\b",
    ),
    # authority claims and target strings of hijack attacks
    _p(
        "authority", 0.6, "your",
        r"\b(?:i am|i'm|this is)\s+your\s+(?:developer|creator|programmer|owner|maker|"
        r"operator|administrator|admin)\b",
    ),
    _p(
        "authority", 0.6, "override",
        r"\b(?:admin(?:istrator)?|developer|sudo|root|system|emergency|priority)\s+override\b",
    ),
    _p(
        "hijack", 0.45, "pwned|hacked|access granted",
        r"\b(?:i have been pwned|i've been pwned|pwned|haha pwned|you(?:'ve|"
        r" have) been hacked|access granted)\b",
    ),
)  # fmt: skip

SIGNAL_WEIGHTS = {
    "normalize:invisible": 0.35,
    "normalize:homoglyph": 0.35,
    "encoded:unicode-tags": 0.6,
    "encoded:base64": 0.15,
    "encoded:hex": 0.15,
    "encoded:url": 0.1,
}


class _LiteralTable:
    """The literals the patterns look for (needles and start literals), with the byte
    4-grams of each: a text holds a literal only if it holds every 4-gram of the literal's
    UTF-8 bytes (UTF-8 keeps substrings substrings), so one table of the (hashed) 4-grams a
    text holds tells, for all literals at once, which ones it may hold. A literal shorter
    than four bytes has no 4-gram: the table never rules it out. (Trigrams as well ruled out
    so few more literals that their pass cost more than the searches it saved.)"""

    BITS = 14  # table slots
    SIZE = 4  # bytes per n-gram: one little-endian 32-bit word
    # a literal is checked by the 4-grams of its first PREFIX bytes: at most WIDTH of them,
    # so that a literal's row of table bytes reads as one 64-bit word
    PREFIX = 8
    WIDTH = 8
    ALL_HELD = int.from_bytes(b"\1" * WIDTH, "little")

    def __init__(self, literals: Iterable[str]) -> None:
        self.names = sorted(set(literals))
        self.row = {name: i for i, name in enumerate(self.names)}
        data = [name.encode("utf-8", "surrogatepass")[: self.PREFIX] for name in self.names]
        # one row per literal: where its 4-grams are in the table, padded with an extra slot
        # that is always set
        always = 1 << self.BITS
        rows = [self._slots(d).tolist() for d in data]
        padded = [[*row, *[always] * (self.WIDTH - len(row))] for row in rows]
        self.slots = np.array(padded, dtype=np.intp).reshape(len(rows), self.WIDTH)

    @classmethod
    def _slots(cls, data: bytes) -> npt.NDArray[np.intp]:
        """The table slot of each 4-byte n-gram of ``data``, hashed (multiplicative hashing)."""
        if len(data) < cls.SIZE:
            return np.zeros(0, dtype=np.intp)
        # the little-endian 32-bit word at every byte offset is the 4-gram there
        words = np.ndarray((len(data) - cls.SIZE + 1,), dtype="<u4", buffer=data, strides=(1,))
        key = words * np.uint32(2654435761)  # modulo 2**32
        key >>= np.uint32(32 - cls.BITS)
        return key.astype(np.intp)

    def may_hold(self, text: str) -> set[str]:
        """The literals ``text`` may hold (it certainly holds none of the others)."""
        held = np.zeros((1 << self.BITS) + 1, dtype=np.uint8)
        held[-1] = 1
        held[self._slots(text.encode("utf-8", "surrogatepass"))] = 1
        rows = held[self.slots].view(np.uint64).ravel()
        return set(
            itertools.compress(self.names, cast(list[bool], (rows == self.ALL_HELD).tolist()))
        )


# the literals of the patterns that read the folded view: most patterns, and most literals;
# the few of those that read the lines are each looked for with ``in``
_LITERALS = _LiteralTable(
    literal
    for pattern in PATTERNS
    if pattern.on == "view"
    for literal in (*pattern.needles, *pattern.starts)
)


@dataclass(frozen=True, slots=True)
class Hit:
    """One heuristic family that matched, with the strongest weight it matched at."""

    family: str
    weight: float


def _strongest_first(patterns: tuple[Pattern, ...]) -> tuple[Pattern, ...]:
    """The patterns family by family, in the order the families are listed, and each family's
    strongest patterns first: once one of them matches, the family's weaker ones need not
    run. (A family's patterns are listed together, so the families that match come out in
    the order a reading of ``PATTERNS`` in turn finds them.)"""
    first: dict[str, int] = {}
    for i, pattern in enumerate(patterns):
        first.setdefault(pattern.family, i)
    return tuple(sorted(patterns, key=lambda p: (first[p.family], -p.weight)))


_SEARCH_ORDER = _strongest_first(PATTERNS)


def heuristic_hits(norm: Normalized) -> list[Hit]:
    """The attack families whose patterns match this normalised text (strongest per family)."""
    best: dict[str, float] = {}
    views = {"view": _reader(norm.view, _LITERALS), "lines": _reader(norm.lines, None)}
    for pattern in _SEARCH_ORDER:
        if pattern.weight <= best.get(pattern.family, 0.0):
            continue
        view = views[pattern.on]
        if view.holds_any(pattern.needles) and view.search_word(pattern):
            best[pattern.family] = pattern.weight
    return [Hit(family, weight) for family, weight in best.items()]


def _reader(text: str, table: _LiteralTable | None) -> _Text:
    return _IndexedText(text, table) if len(text) >= _LONG_TEXT else _Text(text)


class _Text:
    """A text the patterns read: needles with ``in``, the regex with ``finditer``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def holds_any(self, literals: tuple[str, ...]) -> bool:
        return any(map(self.text.__contains__, literals))

    def search_word(self, pattern: Pattern) -> bool:
        """Is there a match that starts at a word boundary (the ``\b`` ``unanchor``
        dropped)? Matches as ``finditer`` gives them: leftmost first, not overlapping."""
        text = self.text
        if pattern.after_newline is not None:
            # every match begins a line, so at a word boundary: is there one at all?
            if pattern.regex.match(text) is not None:
                return True
            return pattern.after_newline.search(text) is not None
        return any(_at_word_start(text, m.start()) for m in pattern.regex.finditer(text))


class _IndexedText(_Text):
    """A long text, and where the literals asked about so far occur in it.

    The patterns share needles and start literals (the override verbs start six patterns), so
    each literal is looked for once per text, with ``str.find``, which is much faster than the
    regex engine trying an alternation of literals at every character; the regex then runs
    only where a match can start. Most literals are absent from most texts: ``_LITERALS``
    rules those out without reading the text again.
    """

    def __init__(self, text: str, table: _LiteralTable | None) -> None:
        super().__init__(text)
        # the literals that may occur, when a table tells (it lists every literal asked about)
        self.maybe = table.may_hold(text) if table is not None else None
        self.found: dict[str, list[int]] = {}  # literal -> where it occurs
        self.held: dict[str, bool] = {}  # literal -> whether it occurs
        self.held_any: dict[tuple[str, ...], bool] = {}  # needles -> whether one occurs
        # (anchors, lead) -> where a match may start
        self.starts: dict[tuple[tuple[str, ...], int], list[int]] = {}

    def holds_any(self, literals: tuple[str, ...]) -> bool:
        known = self.held_any.get(literals)
        if known is None:
            known = False
            held, maybe, text = self.held, self.maybe, self.text
            for literal in literals:
                found = held.get(literal)
                if found is None:
                    possible = maybe is None or literal in maybe
                    found = held[literal] = possible and literal in text
                if found:
                    known = True
                    break
            self.held_any[literals] = known
        return known

    def positions(self, literal: str) -> list[int]:
        at = self.found.get(literal)
        if at is None:
            at = self.found[literal] = []
            known = self.held.get(literal)
            if (self.maybe is None or literal in self.maybe) if known is None else known:
                find = self.text.find
                i = find(literal)
                while i >= 0:
                    at.append(i)
                    i = find(literal, i + 1)
        return at

    def search_word(self, pattern: Pattern) -> bool:
        """As ``_Text.search_word``; when the pattern says which literals its matches start
        with, the regex is tried only where one of them occurs and gives the same matches
        in the same order."""
        if pattern.anchors:
            key = (pattern.anchors, pattern.lead)
            at = self.starts.get(key)
            if at is None:
                found: set[int] = set().union(*map(self.positions, pattern.anchors))
                if pattern.lead:
                    back = range(pattern.lead + 1)
                    found = {i - b for i in found for b in back if i >= b}
                at = self.starts[key] = sorted(found)
            if len(at) * _CHARS_PER_MATCH_CALL < len(self.text):
                return self._search_at(pattern.regex, at)
        return super().search_word(pattern)

    def _search_at(self, regex: re.Pattern[str], candidates: list[int]) -> bool:
        text = self.text
        end = 0
        for start in candidates:
            if start < end:
                continue
            match = regex.match(text, start)
            if match is not None:
                if _at_word_start(text, start):
                    return True
                end = match.end()
        return False


# Texts from this long are indexed (_IndexedText); shorter ones are quicker to just read.
_LONG_TEXT = 500
# Trying the regex at one position costs about what the engine's own scan spends on this many
# characters; with more candidates than one per this many characters, the scan is cheaper.
_CHARS_PER_MATCH_CALL = 32


def _at_word_start(text: str, start: int) -> bool:
    first = text[start : start + 1]
    if not (first.isalnum() or first == "_"):
        return True
    before = text[start - 1 : start]
    return not (before.isalnum() or before == "_")
