"""A scikit-learn model stored with skops: loaded without pickle, only from reviewed types."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from keelwork.contract.language import FieldSpec
from keelwork.errors import SpecError
from keelwork.providers.base import file_version, plain, worker_pool
from keelwork.spec import ModelSpec


class SklearnProvider:
    """Predicts from the declared input fields; returns ``{label: class, score: probability}``."""

    def __init__(
        self, name: str, spec: ModelSpec, service_dir: Path, input_fields: dict[str, FieldSpec]
    ) -> None:
        import skops.io as sio

        assert spec.path is not None and spec.inputs
        where = f"models.{name}.path"
        path = (service_dir / spec.path).resolve()
        if not path.is_file():
            raise SpecError(
                f"{where}: model file {path} does not exist; train or copy it there first",
                code="spec.model_missing",
            )
        try:
            untrusted = sio.get_untrusted_types(file=path)
        except Exception as exc:
            raise SpecError(
                f"{where}: {path} is not a skops file ({type(exc).__name__}: {exc})",
                code="spec.model_invalid",
            ) from exc
        unexpected = sorted(set(untrusted) - set(spec.trusted_types))
        if unexpected:
            raise SpecError(
                f"{where}: {path.name} holds types skops does not trust by default: "
                f"{', '.join(unexpected)}. Review them, then list them under "
                f"models.{name}.trusted_types",
                code="spec.untrusted_types",
            )
        self.model = sio.load(path, trusted=untrusted)
        self.name = name
        self.version = spec.version or file_version(path)
        self.inputs = list(spec.inputs)
        # one text field feeds a text pipeline (TF-IDF) a list of strings; anything else is
        # a row of features, the 2-D shape every tabular estimator expects
        self.one_text = len(self.inputs) == 1 and input_fields[self.inputs[0]].type == "string"
        self.label = spec.label
        self.score = spec.score
        self.has_proba = hasattr(self.model, "predict_proba") and spec.score is not None
        self.classes = list(getattr(self.model, "classes_", []))
        self.pool = None if spec.executor == "inline" else worker_pool(name, spec.threads or 1)

    def predict(self, record: dict[str, Any]) -> dict[str, Any]:
        row = [record[f] for f in self.inputs]
        x: list[Any] = row if self.one_text else [row]
        if self.has_proba and self.score:
            proba = self.model.predict_proba(x)[0]
            best = int(proba.argmax())
            return {self.label: plain(self.classes[best]), self.score: float(proba[best])}
        return {self.label: plain(self.model.predict(x)[0])}

    async def __call__(self, record: dict[str, Any]) -> Any:
        if self.pool is None:
            return self.predict(record)
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.predict, record)
