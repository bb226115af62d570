"""Prompt-injection screen for text inputs, in three layers that each catch what the others miss.

1. Normalisation (``keelwork.guards.normalize``) undoes cheap disguises before anything looks
   at the text: NFKC, homoglyphs folded to ASCII, invisible and bidi controls removed (their
   presence is itself a signal), hidden Unicode-tag text revealed, and embedded base64 / hex /
   URL-encoded payloads decoded so the decoded text is screened too.
2. Heuristics (``keelwork.guards.heuristics``): weighted patterns for the known attack families
   (instruction override, persona hijack, system-prompt extraction, fake chat delimiters,
   exfiltration links, ...), written to need the attack's *structure* rather than one trigger
   word, so "please ignore my previous email" passes.
3. A small classifier (TF-IDF word + character n-grams, logistic regression) shipped as
   package data in skops format and loaded only with the reviewed types listed here.

This module holds the classifier and the combination: the final score is a noisy-or of the
three, compared with a threshold chosen on validation folds of the training data (stored beside
the model). Everything is built once per ``InjectionScreen``; ``screen`` is pure and
thread-safe.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from keelwork.errors import SpecError
from keelwork.guards.heuristics import SIGNAL_WEIGHTS, heuristic_hits
from keelwork.guards.normalize import (
    MAX_DECODE_DEPTH,
    Normalized,
    non_ascii_characters,
    normalize,
)

MODEL_RESOURCE = "data/injection.skops"
META_RESOURCE = "data/injection.json"

# The only types the shipped model may contain beyond skops' defaults; anything else in the
# file (a tampered or foreign model) is refused before it is loaded.
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.float64",
    "numpy.ndarray",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.pipeline.Pipeline",
)

# Work caps: what one call may cost, whatever it is given.
WINDOW = 1_000  # the classifier reads long texts in windows, so one injected line is not
WINDOW_STEP = 750  # diluted by pages of benign text around it
MAX_WINDOWS = 12


@dataclass(frozen=True, slots=True)
class Verdict:
    """The screen's answer: a score in [0, 1], whether it crosses the threshold, and which
    layers said so (``heuristic:<family>``, ``normalize:<signal>``, ``encoded:<kind>``,
    ``classifier``)."""

    score: float
    flagged: bool
    reasons: list[str] = field(default_factory=list)


def windows(text: str) -> list[str]:
    """The classifier's view of a long text: overlapping windows, at most MAX_WINDOWS."""
    if len(text) <= WINDOW + WINDOW // 2:
        return [text]
    starts = list(range(0, len(text) - WINDOW + WINDOW_STEP, WINDOW_STEP))
    if len(starts) > MAX_WINDOWS:
        step = (len(text) - WINDOW) / (MAX_WINDOWS - 1)
        starts = [round(i * step) for i in range(MAX_WINDOWS)]
    return [text[s : s + WINDOW] for s in starts]


def combine(classifier: float, weights: Iterable[float]) -> float:
    """Noisy-or: every layer is independent evidence; one strong layer is enough."""
    miss = 1.0 - classifier
    for w in weights:
        miss *= 1.0 - w
    return min(1.0, max(0.0, 1.0 - miss))


def classifier_inputs(norm: Normalized) -> list[str]:
    """The segments the classifier scores for one input: windows of the text, then payloads."""
    return windows(norm.text) + [payload[: WINDOW * 2] for _, payload in norm.decoded]


def _load_bytes(path: Path | None, resource: str) -> bytes:
    if path is not None:
        return path.read_bytes()
    return resources.files("keelwork.guards").joinpath(resource).read_bytes()


MODEL_FORMAT = "keelwork-injection/1"


def save_model(pipeline: Any, path: Path) -> None:
    """Save a fitted pipeline with skops (compressed, never pickle).

    Each vectoriser's vocabulary is stored as one array of terms rather than as a dict:
    skops writes a dict entry by entry into its JSON schema, which for tens of thousands of
    n-grams makes a file that takes seconds to read back; an array loads in milliseconds.
    """
    import zipfile

    import skops.io as sio

    vocabularies: dict[str, Any] = {}
    for name, vectorizer in pipeline.steps[0][1].transformer_list:
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
        vocabularies[name] = np.array(terms, dtype=np.str_)
    saved = {"format": MODEL_FORMAT, "pipeline": pipeline, "vocabularies": vocabularies}
    held = {name: vec.vocabulary_ for name, vec in pipeline.steps[0][1].transformer_list}
    try:
        for _, vectorizer in pipeline.steps[0][1].transformer_list:
            del vectorizer.vocabulary_
        sio.dump(saved, path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    finally:
        for name, vectorizer in pipeline.steps[0][1].transformer_list:
            vectorizer.vocabulary_ = held[name]


def load_model(path: Path | None = None) -> Any:
    """Load the classifier with skops, refusing any type outside TRUSTED_TYPES."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    where = str(path) if path is not None else f"keelwork.guards/{MODEL_RESOURCE}"
    try:
        data = _load_bytes(path, MODEL_RESOURCE)
    except OSError as exc:
        raise SpecError(
            f"injection model {where} cannot be read ({exc}); run scripts/train_injection.py",
            code="guards.injection_model_missing",
        ) from exc
    try:
        saved = sio.loads(data, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as exc:
        raise SpecError(
            f"injection model {where} holds types outside the reviewed list ({exc}); retrain "
            "it with scripts/train_injection.py, or review the types and add them to "
            "TRUSTED_TYPES",
            code="guards.injection_untrusted_types",
        ) from exc
    except Exception as exc:
        raise SpecError(
            f"injection model {where} is not a skops file ({type(exc).__name__}: {exc})",
            code="guards.injection_model_invalid",
        ) from exc
    if not isinstance(saved, dict) or saved.get("format") != MODEL_FORMAT:
        found = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
        raise SpecError(
            f"injection model {where} is not a {MODEL_FORMAT} file (found {found!r}); "
            "save it with keelwork.guards.injection.save_model",
            code="guards.injection_model_invalid",
        )
    pipeline = saved["pipeline"]
    for name, vectorizer in pipeline.steps[0][1].transformer_list:
        terms = saved["vocabularies"][name]
        vectorizer.vocabulary_ = {str(term): i for i, term in enumerate(terms.tolist())}
    return pipeline


def load_meta(path: Path | None = None) -> dict[str, Any]:
    """The training record saved beside the model (threshold, data, metrics)."""
    meta: dict[str, Any] = json.loads(_load_bytes(path, META_RESOURCE))
    return meta


class LinearTextScorer:
    """The trained pipeline's probabilities for a few texts without scikit-learn's per-call
    cost.

    A fitted ``FeatureUnion`` of TF-IDF vectorisers feeding a binary logistic regression is a
    sparse dot product: for each vectoriser, sum ``coef * idf * (1 + log tf)`` over the
    n-grams a text contains, divided by the L2 norm of ``idf * (1 + log tf)``. Each
    vectoriser's n-grams are found by an ``NgramIndex`` (see ``ngram_index``) and every text
    of one call is scored in the same numpy operations, so the classifier's windows of one
    input cost about as much as one long text.
    """

    def __init__(self, pipeline: Any) -> None:
        union, clf = pipeline.steps[0][1], pipeline.steps[-1][1]
        classes = [int(c) for c in clf.classes_]
        if len(pipeline.steps) != 2 or classes != [0, 1] or union.transformer_weights:
            raise SpecError(
                "injection model must be Pipeline(FeatureUnion(TfidfVectorizer...), "
                f"LogisticRegression) over labels [0, 1]; got steps "
                f"{[name for name, _ in pipeline.steps]} and classes {classes}",
                code="guards.injection_model_invalid",
            )
        coef = np.asarray(clf.coef_[0], dtype=np.float64)
        self.intercept = float(clf.intercept_[0])
        self.blocks: list[_Block] = []
        offset = 0
        for name, vec in union.transformer_list:
            if not (vec.sublinear_tf and vec.use_idf and vec.norm == "l2" and not vec.binary):
                raise SpecError(
                    f"injection model: vectoriser {name!r} must use sublinear_tf, idf and l2 "
                    "norm (the fast scorer assumes them)",
                    code="guards.injection_model_invalid",
                )
            # one extra slot (idf 0, weight 0) stands for every n-gram outside the vocabulary
            idf = np.append(np.asarray(vec.idf_, dtype=np.float64), 0.0)
            weights = np.append(coef[offset : offset + len(vec.idf_)], 0.0) * idf
            self.blocks.append(_Block(ngram_index(vec), AnalyzerIndex(vec), weights, idf))
            offset += len(vec.idf_)
        if offset != len(coef):
            raise SpecError(
                f"injection model: {offset} features from the vectorisers but "
                f"{len(coef)} coefficients",
                code="guards.injection_model_invalid",
            )
        # the texts are preprocessed (lower-cased) once for all blocks when they all do it alike
        self.prepare: Callable[[str], str] | None = None
        indexes = [b.ngrams for b in self.blocks if isinstance(b.ngrams, PreparedIndex)]
        if len(indexes) == len(self.blocks) and len({i.preprocessing for i in indexes}) == 1:
            self.prepare = indexes[0].preprocess

    def probas(self, texts: Sequence[str]) -> list[float]:
        """Probability of injection for each text."""
        if sum(map(len, texts)) < _SMALL_INPUT:
            return [
                _sigmoid(self.intercept + sum(block.decision_of(text) for block in self.blocks))
                for text in texts
            ]
        out: list[float] = []
        for first in range(0, len(texts), _BATCH):
            batch = texts[first : first + _BATCH]
            prepared = None if self.prepare is None else [self.prepare(t) for t in batch]
            z = np.full(len(batch), self.intercept)
            for block in self.blocks:
                z += block.decision(batch, prepared)
            out += [_sigmoid(float(v)) for v in z]
        return out

    def proba(self, text: str) -> float:
        return self.probas([text])[0]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


# Texts scored in one set of numpy operations: bounds the dense (texts x distinct n-grams)
# matrices of a call, whatever the caller passes. One input has at most MAX_WINDOWS windows
# and MAX_DECODED payloads.
_BATCH = 32
# ``1 + log(tf)`` is looked up for counts below this, computed above it.
_SUBLINEAR_TABLE = 4_096
# Inputs shorter than this (all texts of a call together) are scored one text at a time with
# the vectoriser's analyzer: a few numpy calls instead of tens, quicker when there is little
# text to read.
_SMALL_INPUT = 256

Indices = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class _Block:
    """One vectoriser's share of the decision function: where its n-grams are (found fast or
    by the vectoriser's analyzer), and the per-term ``coef * idf`` and ``idf``, each with a
    last slot of 0 for n-grams outside the vocabulary."""

    ngrams: NgramIndex
    reference: AnalyzerIndex
    weights: npt.NDArray[np.float64]
    idf: npt.NDArray[np.float64]
    sublinear: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.concatenate(
            ([0.0], 1.0 + np.log(np.arange(1, _SUBLINEAR_TABLE, dtype=np.float64)))
        )
    )

    def decision(
        self, texts: Sequence[str], prepared: Sequence[str] | None = None
    ) -> npt.NDArray[np.float64]:
        """``sum(coef * tfidf)`` of each text, its TF-IDF vector L2-normalised as the
        vectoriser normalises it. ``prepared``: the texts already preprocessed, for an index
        that takes them so (a ``PreparedIndex``: only a caller that checked gives them)."""
        z = np.zeros(len(texts))
        if prepared is not None:
            text_of, term = cast(PreparedIndex, self.ngrams).of_prepared(prepared)
        else:
            text_of, term = self.ngrams(texts)
        if term.size == 0:
            return z
        # the terms that occur at all, numbered 0..d-1, so the count matrix is texts x d (the
        # last slot, out-of-vocabulary, may be among them: its idf and weight are 0)
        seen = np.zeros(len(self.idf), dtype=np.bool_)
        seen[term] = True
        present = np.flatnonzero(seen)
        compact = np.empty(len(self.idf), dtype=np.intp)
        compact[present] = np.arange(present.size)
        d = present.size
        key = compact.take(term)
        key += text_of * d  # (text_of broadcast over the term array's leading axes)
        counts = np.bincount(key.ravel(), minlength=len(texts) * d).reshape(len(texts), d)
        if counts.max() < _SUBLINEAR_TABLE:
            tf = self.sublinear.take(counts)
        else:
            tf = np.zeros(counts.shape)
            np.log(counts, out=tf, where=counts > 0)
            tf += counts > 0
        scaled = tf * self.idf.take(present)
        norm = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        np.divide(tf @ self.weights.take(present), norm, out=z, where=norm > 0.0)
        return z

    def decision_of(self, text: str) -> float:
        """``decision`` of one text, from its n-gram counts."""
        counts = Counter(self.reference.analyze(text))
        if not counts:
            return 0.0
        n = len(counts)
        unknown = itertools.repeat(len(self.idf) - 1, n)
        get = self.reference.vocabulary.get
        index = np.fromiter(map(get, counts, unknown), dtype=np.intp, count=n)
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=n))
        scaled = tf * self.idf[index]
        norm = math.sqrt(float(np.dot(scaled, scaled)))
        return float(np.dot(tf, self.weights[index])) / norm if norm > 0.0 else 0.0


class NgramIndex(Protocol):
    """Where a fitted vectoriser's vocabulary occurs in some texts: ``(text, term)`` index
    pairs, one per n-gram the vectoriser's own analyzer gives, exactly as often. An n-gram
    outside the vocabulary has no feature: it may be left out, or given as the term
    ``len(vocabulary)`` (whose idf and weight are 0), whichever is cheaper. The term array
    may have leading axes the text array is broadcast over (one row per n-gram length,
    say): the pairs are then those of ``np.broadcast_arrays(text, term)``."""

    def __call__(self, texts: Sequence[str]) -> tuple[Indices, Indices]: ...


@runtime_checkable
class PreparedIndex(NgramIndex, Protocol):
    """An ``NgramIndex`` that also takes texts already preprocessed: indexes whose
    ``preprocessing`` (what their ``preprocess`` depends on) is the same preprocess a text
    alike, so it is done once for them all."""

    preprocessing: Hashable
    preprocess: Callable[[str], str]

    def of_prepared(self, prepared: Sequence[str]) -> tuple[Indices, Indices]: ...


def _preprocessing(vec: Any) -> Hashable:
    """What a vectoriser's ``build_preprocessor()`` depends on."""
    return (bool(vec.lowercase), vec.strip_accents, vec.preprocessor)


def ngram_index(vec: Any) -> NgramIndex:
    """The fastest exact ``NgramIndex`` for a fitted ``TfidfVectorizer``: numpy lookups for the
    configurations the classifier is trained with (``char_wb`` n-grams, word 1-2-grams of the
    default token pattern), the vectoriser's own analyzer for any other."""
    return CharWbIndex.build(vec) or WordIndex.build(vec) or AnalyzerIndex(vec)


def _vocabulary(vec: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in vec.vocabulary_.items()}


def _standard(vec: Any) -> bool:
    """Text in, the vectoriser's own preprocessor, nothing a fast index would skip."""
    return bool(vec.input == "content" and not callable(vec.analyzer))


class AnalyzerIndex:
    """The reference: the vectoriser's ``build_analyzer()`` and a dictionary lookup per n-gram."""

    def __init__(self, vec: Any) -> None:
        self.analyze = vec.build_analyzer()
        self.vocabulary = _vocabulary(vec)

    def __call__(self, texts: Sequence[str]) -> tuple[Indices, Indices]:
        text_of: list[int] = []
        term: list[int] = []
        for i, text in enumerate(texts):
            found = [t for t in map(self.vocabulary.get, self.analyze(text)) if t is not None]
            term += found
            text_of += [i] * len(found)
        return np.array(text_of, dtype=np.intp), np.array(term, dtype=np.intp)


class CharWbIndex:
    """``char_wb`` n-grams found with numpy instead of a Python loop per character.

    scikit-learn pads every whitespace-separated word of the preprocessed text with one space
    and takes its substrings of ``min_n..max_n`` characters (never longer than the padded
    word). In the text with every whitespace character made a space and one space added at
    each end, those are exactly the substrings with no space inside them (a space may only be
    their first or last character). Every character is mapped to its code in the
    vocabulary's alphabet (0 when no term uses it; whitespace to the code of the space) and
    each substring is looked up in a trie of the vocabulary, one array lookup per character
    for all positions at once: the first table maps the codes of the first ``k`` characters
    to the node of that prefix, each further level maps (node of the first ``L - 1``
    characters, code of the next) to the node of the first ``L``; node 0 means no term
    starts so. A substring with a space inside or a character outside the alphabet falls off
    the trie by itself.
    """

    MAX_ENTRIES = 4_000_000  # a vocabulary whose trie needs more is read by AnalyzerIndex

    def __init__(self, vec: Any, alphabet: str) -> None:
        vocabulary = _vocabulary(vec)
        self.preprocess: Callable[[str], str] = vec.build_preprocessor()
        self.preprocessing = _preprocessing(vec)
        self.min_n, self.max_n = (int(n) for n in vec.ngram_range)
        self.radix = radix = len(alphabet) + 1
        self.unknown = len(vocabulary)
        code = {ch: i for i, ch in enumerate(alphabet, start=1)}
        highest = max(map(ord, alphabet + _WHITESPACE))
        self.code = np.zeros(highest + 2, dtype=np.intp)  # the last entry: beyond, code 0
        for ch, i in code.items():
            self.code[ord(ch)] = i
        for ch in _WHITESPACE:
            self.code[ord(ch)] = code.get(" ", 0)
        # the first table is indexed by the first k codes together (one lookup, not k)
        self.k = k = max(
            (j for j in range(1, self.min_n + 1) if radix**j <= self.MAX_ENTRIES // 4), default=1
        )
        self.tables: list[Indices] = []
        self.terms: list[Indices] = []  # per level from k on: node -> term (unknown if none)
        parents: dict[str, int] = {}
        for level in range(k, self.max_n + 1):
            prefixes = sorted({t[:level] for t in vocabulary if len(t) >= level})
            size = radix**k if level == k else (len(parents) + 1) * radix
            table = np.zeros(size, dtype=np.intp)
            nodes = {prefix: node for node, prefix in enumerate(prefixes, start=1)}
            for prefix, node in nodes.items():
                if level == k:
                    table[_digits(map(code.__getitem__, prefix), radix)] = node
                else:
                    table[parents[prefix[:-1]] * radix + code[prefix[-1]]] = node
            terms = [vocabulary.get(prefix, self.unknown) for prefix in prefixes]
            self.tables.append(table)
            self.terms.append(np.array([self.unknown, *terms], dtype=np.intp))
            parents = nodes

    @classmethod
    def build(cls, vec: Any) -> CharWbIndex | None:
        if not _standard(vec) or vec.analyzer != "char_wb":
            return None
        alphabet = "".join(sorted(set("".join(vec.vocabulary_))))
        return cls(vec, alphabet) if cls._entries(vec, alphabet) <= cls.MAX_ENTRIES else None

    @staticmethod
    def _entries(vec: Any, alphabet: str) -> int:
        """Size of the deeper levels' tables (the first one is capped by construction)."""
        radix, max_n = len(alphabet) + 1, int(vec.ngram_range[1])
        prefixes = [len({t[:n] for t in vec.vocabulary_ if len(t) >= n}) for n in range(1, max_n)]
        return sum((count + 1) * radix for count in prefixes)

    def __call__(self, texts: Sequence[str]) -> tuple[Indices, Indices]:
        return self.of_prepared([self.preprocess(text) for text in texts])

    def of_prepared(self, prepared: Sequence[str]) -> tuple[Indices, Indices]:
        """One row of terms per n-gram length, one column per character of the texts."""
        joined = " " + "  ".join(prepared) + " "
        n = len(joined)
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        codes = np.zeros(n + self.max_n, dtype=np.intp)  # zeros past the end end every walk
        self.code.take(points, out=codes[:n], mode="clip")
        key = codes[:n].copy()
        for j in range(1, self.k):
            key *= self.radix
            key += codes[j : j + n]
        levels = range(max(self.k, self.min_n), self.max_n + 1)
        term = np.empty((len(levels), n), dtype=np.intp)
        node = self.tables[0].take(key)
        for level in range(self.k, self.max_n + 1):
            step = level - self.k
            if step:
                np.multiply(node, self.radix, out=key)
                key += codes[level - 1 : level - 1 + n]
                self.tables[step].take(key, out=node)
            if level >= self.min_n:
                self.terms[step].take(node, out=term[level - levels.start])
        # each text is its preprocessed characters (lower-casing may change their number)
        # and the two spaces around them
        return np.repeat(np.arange(len(prepared)), [len(t) + 2 for t in prepared]), term


# what str.split() splits on: the characters for which str.isspace() holds (none above U+3000)
_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
# bytes of ASCII-encoded text (non-ASCII characters as "?"): the regex \w (letters, digits,
# "_") kept, everything else a space
_NON_WORD_BYTES = bytes(
    b if b < 128 and (chr(b).isalnum() or chr(b) == "_") else ord(" ") for b in range(256)
)


def _ascii_words(text: str) -> bool:
    """Are the text's word characters (the regex ``\\w``: letters, digits, "_") all ASCII?"""
    return text.isascii() or not any(c.isalnum() or c == "_" for c in non_ascii_characters(text))


def _digits(codes: Iterable[int], radix: int) -> int:
    """The number whose base-``radix`` digits are ``codes``, most significant first."""
    value = 0
    for c in codes:
        value = value * radix + c
    return value


class WordIndex:
    """Word unigrams and bigrams found with one dictionary lookup per token.

    Bigrams are looked up as pairs of token numbers instead of joined strings. Only for the
    default token pattern (``TOKEN_PATTERN``): its tokens hold no space, so a term with one
    space is a bigram and its halves are tokens, and its tokens are the runs of two or more
    word characters, which ``str.split`` finds several times faster than the regex once
    every other character is a space (see ``tokens_of``).
    """

    TOKEN_PATTERN = r"(?u)\b\w\w+\b"

    def __init__(self, vec: Any) -> None:
        self.preprocess: Callable[[str], str] = vec.build_preprocessor()
        self.preprocessing = _preprocessing(vec)
        self.tokenize = vec.build_tokenizer()
        self.min_n, self.max_n = (int(n) for n in vec.ngram_range)
        vocabulary = _vocabulary(vec)
        self.unknown = len(vocabulary)
        # every token some term is made of gets a number; unigram and bigram terms by number
        numbers: dict[str, int] = {}
        for term in vocabulary:
            for token in term.split(" "):
                numbers.setdefault(token, len(numbers))
        self.other = len(numbers)  # a token no term uses
        self.single = self.other + 1  # one character: not a token at all
        self.tokens = {**{chr(c): self.single for c in range(128)}, **numbers}
        self.unigram = np.full(self.single + 1, self.unknown, dtype=np.intp)
        pairs: list[tuple[int, int]] = []
        for term, index in vocabulary.items():
            parts = [numbers[t] for t in term.split(" ")]
            if len(parts) == 1:
                self.unigram[parts[0]] = index
            else:
                pairs.append((parts[0] * (self.other + 1) + parts[1], index))
        pairs.sort()
        self.bigram_keys = np.array([k for k, _ in pairs], dtype=np.intp)
        self.bigram_terms = np.array([t for _, t in pairs], dtype=np.intp)
        self.starts_bigram = np.zeros(self.single + 1, dtype=bool)
        self.starts_bigram[self.bigram_keys // (self.other + 1)] = True

    def tokens_of(self, text: str, ascii_words: bool | None = None) -> list[str]:
        """The token pattern's tokens of ``text``, and one-character runs (a caller drops
        them): every non-word character becomes a space and ``str.split`` cuts there, when
        the text's word characters are all ASCII (``ascii_words``, when already known); the
        regex otherwise."""
        if not (_ascii_words(text) if ascii_words is None else ascii_words):
            return list(self.tokenize(text))
        # non-ASCII characters (none of them a word character) become "?", then spaces
        return text.encode("ascii", "replace").translate(_NON_WORD_BYTES).decode().split()

    @classmethod
    def build(cls, vec: Any) -> WordIndex | None:
        if not (
            _standard(vec)
            and vec.analyzer == "word"
            and vec.tokenizer is None
            and vec.token_pattern == cls.TOKEN_PATTERN
            and vec.get_stop_words() is None
            and 1 <= vec.ngram_range[0] <= vec.ngram_range[1] <= 2
        ):
            return None
        return cls(vec)

    def __call__(self, texts: Sequence[str]) -> tuple[Indices, Indices]:
        return self.of_prepared([self.preprocess(text) for text in texts])

    def of_prepared(self, prepared: Sequence[str]) -> tuple[Indices, Indices]:
        # when all of them are, no text has a word character outside ASCII (one look for
        # the windows of a long text, which share most of their characters)
        ascii_words = True if _ascii_words(" ".join(prepared)) else None
        tokens: list[str] = []
        counts: list[int] = []
        for text in prepared:
            words = self.tokens_of(text, ascii_words)
            tokens += words
            counts.append(len(words))
        found = map(self.tokens.get, tokens, itertools.repeat(self.other))
        number = np.fromiter(found, dtype=np.intp, count=len(tokens))
        text_at = np.repeat(np.arange(len(prepared)), counts)
        kept = number != self.single
        number, text_at = number[kept], text_at[kept]
        text_of: list[Indices] = []
        term: list[Indices] = []
        if self.min_n == 1:
            term.append(self.unigram[number])
            text_of.append(text_at)
        if self.max_n == 2 and number.size > 1 and self.bigram_keys.size:
            first, second = number[:-1], number[1:]
            pair = (text_at[:-1] == text_at[1:]) & self.starts_bigram[first]
            pair &= second != self.other
            keys = first[pair] * (self.other + 1) + second[pair]
            at = np.minimum(np.searchsorted(self.bigram_keys, keys), self.bigram_keys.size - 1)
            known = self.bigram_keys[at] == keys
            term.append(self.bigram_terms[at[known]])
            text_of.append(text_at[:-1][pair][known])
        if not term:
            return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
        return np.concatenate(text_of), np.concatenate(term)


class InjectionScreen:
    """Screens texts for prompt injection; build once (it loads the model), call many times.

    ``threshold`` defaults to the one chosen on validation folds of the training data and
    stored with the model; pass one to trade recall for false positives. ``model`` takes an
    already fitted pipeline (training uses it to score validation folds).
    """

    def __init__(
        self,
        model_path: Path | None = None,
        meta_path: Path | None = None,
        threshold: float | None = None,
        model: Any = None,
    ) -> None:
        if meta_path is None and model_path is not None:
            meta_path = model_path.with_suffix(".json")
        self.meta: dict[str, Any] = load_meta(meta_path) if threshold is None else {}
        if threshold is None:
            threshold = float(self.meta["threshold"])
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.model = model if model is not None else load_model(model_path)
        self.scorer = LinearTextScorer(self.model)

    def classify(self, segments: Sequence[str]) -> list[float]:
        """Classifier probabilities of injection for already-normalised segments."""
        return self.scorer.probas(segments)

    def screen(self, text: str) -> Verdict:
        """Score one text; never raises on any string."""
        norm = normalize(text)
        return self.judge(norm, self.classify(classifier_inputs(norm)))

    def screen_record(self, record: Mapping[str, Any]) -> Verdict:
        """Screen the texts of one request record (see ``texts_to_screen``); the verdict of
        its most suspicious text, with the reasons of every flagged one."""
        verdicts = [self.screen(text) for text in texts_to_screen(record)]
        if not verdicts:
            return Verdict(score=0.0, flagged=False, reasons=[])
        worst = max(verdicts, key=lambda v: v.score)
        reasons = list(worst.reasons)
        for verdict in verdicts:
            if verdict.flagged:
                reasons += [r for r in verdict.reasons if r not in reasons]
        return Verdict(score=worst.score, flagged=worst.flagged, reasons=reasons)

    def judge(self, norm: Normalized, probabilities: Sequence[float]) -> Verdict:
        """Combine one normalised text's classifier probabilities with the other layers."""
        texts = [norm, *(normalize(payload, MAX_DECODE_DEPTH) for _, payload in norm.decoded)]
        families: dict[str, float] = {}
        for part in texts:
            for hit in heuristic_hits(part):
                families[hit.family] = max(hit.weight, families.get(hit.family, 0.0))
        signals = {s: SIGNAL_WEIGHTS[s] for s in norm.signals}
        for kind, _ in norm.decoded:
            signals[f"encoded:{kind}"] = SIGNAL_WEIGHTS[f"encoded:{kind}"]
        classifier = max(probabilities, default=0.0)
        score = combine(classifier, [*families.values(), *signals.values()])
        reasons = [f"heuristic:{f}" for f in sorted(families, key=lambda f: -families[f])]
        reasons += sorted(signals)
        if classifier >= 0.5:
            reasons.insert(0, "classifier")
        return Verdict(score=round(score, 6), flagged=score >= self.threshold, reasons=reasons)


def scan_lines(lines: Iterable[str], screen: InjectionScreen) -> Iterator[dict[str, Any]]:
    """One ``{"score", "flagged"}`` per input line (line endings dropped, blank lines kept)."""
    for line in lines:
        verdict = screen.screen(line.rstrip("\r\n"))
        yield {"score": verdict.score, "flagged": verdict.flagged}


_SCREENED_ROLES = frozenset({"user", "system", "developer"})
_MAX_DEPTH = 8


def texts_to_screen(record: Mapping[str, Any]) -> list[str]:
    """The text of a request worth screening.

    A chat request (``messages: [{role, content}]``, OpenAI or Anthropic shape) gives the
    content of its user and system messages and any top-level ``system``; assistant and tool
    turns are the service's own words. Any other record gives every string value, nested
    ones included.
    """
    messages = record.get("messages")
    if isinstance(messages, list):
        out = _content_text(record.get("system"))
        for message in messages:
            if isinstance(message, Mapping) and message.get("role") in _SCREENED_ROLES:
                out += _content_text(message.get("content"))
        return out
    return _strings(record, 0)


def _content_text(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                out.append(part["text"])
    return out


def _strings(value: Any, depth: int) -> list[str]:
    if isinstance(value, str):
        return [value]
    if depth >= _MAX_DEPTH:
        return []
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v, depth + 1)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v, depth + 1)]
    return []
