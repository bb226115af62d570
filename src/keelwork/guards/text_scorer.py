"""The injection classifier's scores, computed without scikit-learn's per-call cost.

The shipped model is TF-IDF vectorisers feeding a logistic regression; for a handful of
windows of one input, scikit-learn's own ``predict_proba`` costs more than the arithmetic.
``LinearTextScorer`` does that arithmetic directly, with each vectoriser's n-grams found by an
``NgramIndex`` built from its vocabulary, and gives the same probabilities.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from keelwork.errors import SpecError
from keelwork.guards.normalize import non_ascii_characters


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
