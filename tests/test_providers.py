"""Providers: stored scikit-learn models of both shapes, refused files, odd payloads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import yaml
from sklearn.linear_model import LogisticRegression

import keelwork
from tests.conftest import SPEC, deep_merge


def tabular_service(d: Path, inputs: list[str]) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(inputs)))
    y = np.where(x.sum(axis=1) > 0, "high", "low")
    sio.dump(LogisticRegression().fit(x, y), d / "clf.skops")
    fields = {name: {"type": "number"} for name in inputs}
    spec = deep_merge(
        SPEC,
        {
            "input": {"fields": fields},
            "output": {"fields": {"label": {"type": "enum", "values": ["high", "low"]}}},
            "models": {
                "main": {
                    "kind": "sklearn",
                    "target": None,
                    "path": "clf.skops",
                    "inputs": inputs,
                    "label": "label",
                    "score": "score",
                },
            },
            "routing": {"fallbacks": [], "default": None},
        },
    )
    spec["input"]["fields"] = fields
    del spec["models"]["spare"]
    (d / "keelwork.yaml").write_text(yaml.safe_dump(spec))
    return d


@pytest.mark.parametrize("inputs", [["a"], ["a", "b", "c"]])
async def test_a_tabular_sklearn_model_gets_a_feature_row(
    tmp_path: Path, inputs: list[str]
) -> None:
    svc = keelwork.load_service(
        tabular_service(tmp_path, inputs), database_url=f"sqlite:///{tmp_path}/t.db"
    )
    async with svc:
        high = await svc.predict(dict.fromkeys(inputs, 3.0))
        low = await svc.predict(dict.fromkeys(inputs, -3.0))
    assert (high.output["label"], low.output["label"]) == ("high", "low")
    assert high.model == "main" and not high.fallback
    assert 0.5 < high.output["score"] <= 1


def test_a_file_that_is_not_skops_is_refused_with_the_key(tmp_path: Path) -> None:
    tabular_service(tmp_path, ["a"])
    (tmp_path / "clf.skops").write_bytes(b"not a zip file")
    with pytest.raises(keelwork.SpecError) as info:
        keelwork.load_service(tmp_path, database_url=f"sqlite:///{tmp_path}/t.db")
    assert "models.main.path" in str(info.value) and "not a skops file" in str(info.value)


def test_a_missing_model_file_says_so(tmp_path: Path) -> None:
    tabular_service(tmp_path, ["a"])
    (tmp_path / "clf.skops").unlink()
    with pytest.raises(keelwork.SpecError) as info:
        keelwork.load_service(tmp_path, database_url=f"sqlite:///{tmp_path}/t.db")
    assert info.value.code == "spec.model_missing"


async def test_nul_characters_are_stored_on_every_backend(
    make_service_dir: Callable[..., Path], db_url: str
) -> None:
    svc = keelwork.load_service(make_service_dir(), database_url=db_url)
    key, _ = svc.keys.create("client")
    async with svc:
        p = await svc.predict({"text": "a\x00b"})
        call = await svc.handle(b'{"text": "\x00', key)
    assert call.error is not None
    assert svc.store.journal_get(p.request_id) is not None
    assert svc.store.quarantine_get(call.request_id) is not None


async def test_an_onnx_classifier_answers_like_the_sklearn_one(tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    tabular_service(tmp_path, ["a", "b", "c"])
    clf = sio.load(tmp_path / "clf.skops")
    onx = to_onnx(clf, np.zeros((1, 3), dtype=np.float32), options={"zipmap": False})
    (tmp_path / "clf.onnx").write_bytes(onx.SerializeToString())
    spec = yaml.safe_load((tmp_path / "keelwork.yaml").read_text())
    spec["models"]["main"] = {
        "kind": "onnx",
        "path": "clf.onnx",
        "inputs": ["a", "b", "c"],
        "label": "label",
        "score": "score",
    }
    (tmp_path / "keelwork.yaml").write_text(yaml.safe_dump(spec))
    svc = keelwork.load_service(tmp_path, database_url=f"sqlite:///{tmp_path}/o.db")
    async with svc:
        high = await svc.predict({"a": 3.0, "b": 3.0, "c": 3.0})
        low = await svc.predict({"a": -3.0, "b": -3.0, "c": -3.0})
    assert (high.output["label"], low.output["label"]) == ("high", "low")
    assert high.model_version.startswith("sha256:") and 0.5 < high.output["score"] <= 1
    (tmp_path / "clf.onnx").write_bytes(b"not onnx")
    with pytest.raises(keelwork.SpecError) as info:
        keelwork.load_service(tmp_path, database_url=f"sqlite:///{tmp_path}/o.db")
    assert "not a loadable ONNX model" in str(info.value)
