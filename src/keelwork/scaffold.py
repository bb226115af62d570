"""What ``keelwork init`` writes: a spec and a Python prototype that serve at once."""

from __future__ import annotations

from pathlib import Path

SPEC = """\
# The service spec: every key is documented in docs/spec.md.
service:
  name: {name}
  version: 0.1.0
  description: A first keelwork service; replace model.py with your prototype.

input:
  fields:
    text:
      type: string
      required: true
      coerce: [strip]
      min_length: 1
      max_length: 2000
  unknown_fields: reject

output:
  fields:
    label:
      type: enum
      values: [positive, negative, neutral]
    score:
      type: number
      min: 0
      max: 1

models:
  prototype:
    kind: python
    target: model:predict

routing:
  primary: prototype
  default: {{label: neutral, score: 0}}

policies:
  timeout_ms: 1000
  retries: 1

journal:
  durability: batched

access:
  require_key: true
"""

MODEL = '''\
"""The prototype keelwork serves: any function from a record (dict) to an answer (dict)."""

POSITIVE = {"good", "great", "love", "thanks", "excellent", "happy"}
NEGATIVE = {"bad", "terrible", "hate", "broken", "angry", "refund"}


def predict(record: dict) -> dict:
    words = set(record["text"].lower().split())
    pos, neg = len(words & POSITIVE), len(words & NEGATIVE)
    if pos == neg:
        return {"label": "neutral", "score": 0.5}
    label = "positive" if pos > neg else "negative"
    return {"label": label, "score": max(pos, neg) / (pos + neg)}
'''


def scaffold(directory: Path, name: str) -> list[Path]:
    """Write the files; refuses to overwrite an existing spec."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = directory / "keelwork.yaml"
    if spec.exists():
        raise FileExistsError(f"{spec} already exists; choose an empty directory")
    model = directory / "model.py"
    spec.write_text(SPEC.format(name=name), encoding="utf-8")
    if not model.exists():
        model.write_text(MODEL, encoding="utf-8")
    return [spec, model]
