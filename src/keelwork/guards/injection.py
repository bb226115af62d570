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

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from keelwork.errors import SpecError
from keelwork.guards.heuristics import SIGNAL_WEIGHTS, heuristic_hits
from keelwork.guards.normalize import (
    MAX_DECODE_DEPTH,
    Normalized,
    normalize,
)
from keelwork.guards.text_scorer import LinearTextScorer

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
