"""Spec load errors name the file, the key, what was found and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import keelwork
from keelwork import SpecError, load_spec
from tests.conftest import SPEC, deep_merge


def write(tmp_path: Path, data: object) -> Path:
    (tmp_path / "keelwork.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def test_the_demo_spec_loads() -> None:
    from tests.conftest import DEMO

    spec = load_spec(DEMO)
    assert spec.service.name == "support_triage"
    assert spec.chain == ["classifier", "keyword_rule"]
    assert spec.routing.default == {"intent": "needs_human", "confidence": 0}


def test_a_typo_gets_a_did_you_mean(tmp_path: Path) -> None:
    data = deep_merge(SPEC, {"policies": {"timeuot_ms": 5}})
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, data))
    msg = str(info.value)
    assert str(tmp_path / "keelwork.yaml") in msg
    assert "policies.timeuot_ms" in msg and "did you mean 'timeout_ms'" in msg


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = deep_merge(
        SPEC,
        {
            "service": {"name": "Bad Name"},
            "input": {"fields": {"n": {"type": "integer", "min": 5, "max": 1}}},
            "journal": {"durability": "eventually"},
        },
    )
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, data))
    paths = {d.path for d in info.value.details}
    assert {"service", "input.fields.n", "journal.durability"} <= paths
    durability = next(d for d in info.value.details if d.path == "journal.durability")
    assert durability.got == "eventually"
    assert "'batched' or 'sync'" in durability.message


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"routing": {"primary": "mian"}}, "did you mean 'main'"),
        (
            {
                "models": {
                    "main": {"kind": "sklearn", "target": None, "path": "m.pkl", "inputs": ["text"]}
                }
            },
            "skops",
        ),
        ({"models": {"main": {"kind": "python", "target": None}}}, "module:function"),
        ({"input": {"fields": {"k2": {"type": "enum"}}}}, "values"),
        ({"input": {"fields": {"text": {"type": "string", "min": 1}}}}, "min_length"),
    ],
)
def test_cross_key_rules_explain_the_fix(
    tmp_path: Path, overrides: dict[str, object], needle: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, deep_merge(SPEC, overrides)))
    assert needle in str(info.value)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "keelwork.yaml").write_text("service:\n  name: x\n input: [\n")
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert "line" in str(info.value) and "not valid YAML" in str(info.value)


def test_a_missing_spec_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert "keelwork init" in str(info.value)


def test_a_default_that_breaks_the_output_contract_is_refused(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    d = make_service_dir({"routing": {"default": {"label": "maybe", "score": 2}}})
    with pytest.raises(SpecError) as info:
        keelwork.load_service(d, database_url=f"sqlite:///{tmp_path}/x.db")
    assert {v.path for v in info.value.details} == {
        "routing.default.label",
        "routing.default.score",
    }


def test_a_missing_model_function_is_named(
    make_service_dir: Callable[..., Path], tmp_path: Path
) -> None:
    d = make_service_dir({"models": {"main": {"target": "model:nothing"}}})
    with pytest.raises(SpecError) as info:
        keelwork.load_service(d, database_url=f"sqlite:///{tmp_path}/x.db")
    assert "models.main.target" in str(info.value) and "'nothing'" in str(info.value)


def test_routing_errors_point_at_the_routing_key(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, deep_merge(SPEC, {"routing": {"fallbacks": ["spaer"]}})))
    (d,) = info.value.details
    assert d.path == "routing.fallbacks" and "did you mean 'spare'" in d.message
