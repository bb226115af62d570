"""The CLI as a new user meets it: init, predict, keys, quarantine, serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from keelwork.cli import app
from tests.pg import free_port

runner = CliRunner()


def test_init_scaffolds_a_service_that_answers_at_once(tmp_path: Path) -> None:
    d = tmp_path / "hello"
    r = runner.invoke(app, ["init", str(d)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", str(d), '{"text": "this is great, thanks"}'])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["output"]["label"] == "positive" and out["service"] == "hello"
    assert runner.invoke(app, ["init", str(d)]).exit_code == 1  # never overwrites


def test_bad_input_is_an_error_and_lands_in_quarantine(tmp_path: Path) -> None:
    d = tmp_path / "svc"
    runner.invoke(app, ["init", str(d)])
    r = runner.invoke(app, ["predict", str(d), '{"text": "", "lang": "en"}'])
    assert r.exit_code == 1
    assert "contract.violation" in r.output and "$.lang" in r.output
    r = runner.invoke(app, ["quarantine", "list", "--dir", str(d), "--json"])
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 1
    assert {v["path"] for v in rows[0]["violations"]} == {"$.text", "$.lang"}
    r = runner.invoke(app, ["quarantine", "show", rows[0]["request_id"], "--dir", str(d)])
    assert r.exit_code == 0 and '"lang": "en"' in r.stdout
    r = runner.invoke(app, ["quarantine", "list", "--dir", str(d)])
    assert "unknown_field" in r.stdout
    assert runner.invoke(app, ["predict", str(d), "{not json"]).exit_code == 1


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    d = tmp_path / "svc"
    runner.invoke(app, ["init", str(d)])
    r = runner.invoke(app, ["keys", "create", "--role", "admin", "--dir", str(d)])
    assert r.exit_code == 0
    key = r.stdout.strip()
    assert re.fullmatch(r"kw_[A-Za-z0-9_-]{43}", key)
    listing = runner.invoke(app, ["keys", "list", "--dir", str(d)]).stdout
    assert key[:12] in listing and key not in listing and "admin" in listing
    assert runner.invoke(app, ["keys", "revoke", key[:12], "--dir", str(d)]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", key[:12], "--dir", str(d)]).exit_code == 1
    assert runner.invoke(app, ["keys", "create", "--role", "root", "--dir", str(d)]).exit_code == 1


def test_keys_set_changes_role_and_scopes_and_audits_it(tmp_path: Path) -> None:
    d = tmp_path / "svc"
    runner.invoke(app, ["init", str(d)])
    key = runner.invoke(app, ["keys", "create", "--role", "client", "--dir", str(d)]).stdout
    prefix = key.strip()[:12]
    r = runner.invoke(
        app, ["keys", "set", prefix, "--role", "reviewer", "--scope", "svc", "--dir", str(d)]
    )
    assert r.exit_code == 0 and "role reviewer, scopes svc" in r.stdout
    r = runner.invoke(app, ["keys", "set", prefix, "--all-services", "--dir", str(d)])
    assert r.exit_code == 0 and "scopes every service" in r.stdout
    r = runner.invoke(app, ["keys", "set", prefix, "--role", "root", "--dir", str(d)])
    assert r.exit_code == 1 and "unknown role 'root'" in r.output
    listing = runner.invoke(app, ["audit", "list", "--dir", str(d)]).stdout
    assert listing.count("role.changed") == 2
    assert runner.invoke(app, ["audit", "verify", "--dir", str(d)]).exit_code == 0


def test_a_broken_spec_fails_with_the_key_named(tmp_path: Path) -> None:
    d = tmp_path / "svc"
    runner.invoke(app, ["init", str(d)])
    spec = d / "keelwork.yaml"
    spec.write_text(spec.read_text().replace("timeout_ms", "timout_ms"))
    r = runner.invoke(app, ["predict", str(d), '{"text": "x"}'])
    assert r.exit_code == 1
    assert "policies.timout_ms" in r.output and "timeout_ms" in r.output


def test_version() -> None:
    import keelwork

    assert runner.invoke(app, ["version"]).stdout.strip() == keelwork.__version__


@pytest.mark.slow
def test_serve_first_key_prints_a_working_curl_line(tmp_path: Path) -> None:
    d = tmp_path / "svc"
    runner.invoke(app, ["init", str(d)])
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "keelwork", "serve", str(d), "--port", str(port), "--first-key"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"COLUMNS": "400", "PATH": "/usr/bin:/bin"},
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any("Serving" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        key = re.search(r"kw_[A-Za-z0-9_-]{43}", text)
        assert key and "curl -s" in text
        url = f"http://127.0.0.1:{port}/v1/services/svc/predict"
        assert url in text
        for _ in range(100):
            try:
                r = httpx.post(
                    url, json={"text": "great"}, headers={"Authorization": f"Bearer {key.group()}"}
                )
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["output"]["label"] == "positive"
        assert httpx.post(url, json={"text": "great"}).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
