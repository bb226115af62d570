"""An ONNX model (onnxruntime, the `onnx` extra): a format that holds no code, so a model file
from elsewhere cannot run anything when it loads. Inputs are the declared feature fields as one
row; a classifier's label and top probability come back, as for scikit-learn models."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from keelwork.contract.language import FieldSpec
from keelwork.errors import SpecError
from keelwork.providers.base import file_version, plain, worker_pool
from keelwork.spec import ModelSpec


class OnnxProvider:
    def __init__(
        self, name: str, spec: ModelSpec, service_dir: Path, input_fields: dict[str, FieldSpec]
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise SpecError(
                f"models.{name}: kind onnx needs onnxruntime; install keelwork[onnx]",
                code="spec.extra_missing",
            ) from None
        assert spec.path is not None and spec.inputs
        path = (service_dir / spec.path).resolve()
        if not path.is_file():
            raise SpecError(f"models.{name}.path: {path} does not exist", code="spec.model_missing")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise SpecError(
                f"models.{name}.path: {path} is not a loadable ONNX model: {exc}",
                code="spec.model_invalid",
            ) from None
        self.name = name
        self.version = spec.version or file_version(path)
        self.inputs = list(spec.inputs)
        self.label, self.score = spec.label, spec.score
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.text = "string" in first.type
        self.pool = None if spec.executor == "inline" else worker_pool(name, spec.threads or 1)
        del input_fields

    def predict(self, record: dict[str, Any]) -> dict[str, Any]:
        row = [record[f] for f in self.inputs]
        x = np.array([row], dtype=object if self.text else np.float32)
        outputs = self.session.run(None, {self.input_name: x})
        label = plain(outputs[0][0])
        out: dict[str, Any] = {self.label: label}
        if self.score is not None and len(outputs) > 1:
            probs = outputs[1][0]
            values = list(probs.values()) if isinstance(probs, dict) else list(probs)
            out[self.score] = float(max(values))
        return out

    async def __call__(self, record: dict[str, Any]) -> Any:
        if self.pool is None:
            return self.predict(record)
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.predict, record)
