"""`home manage links_run`: a plan it cannot follow stops it before any ssh starts, naming the
home and the field (the benchmark's connected homes run it against a real cloud:
tests/workers/bench/test_bench.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from workers.local.sites import cli, home_environ


def _plan(tmp_path: Path, **home: Any) -> dict[str, Any]:
    key = tmp_path / "key"
    key.write_text("")
    entry = {"private_key": str(key), "forwards": [[20001, 8080]], **home}
    return {
        "host": "127.0.0.1",
        "port": 2222,
        "username": "cloudathome",
        "known_hosts": str(tmp_path / "known_hosts"),
        "homes": [entry],
    }


def _run(tmp_path: Path, plan: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return subprocess.run(
        cli("home", "manage", "links_run", "--homes", str(path)),
        env=home_environ(tmp_path / "state", tmp_path / "cloudlink.yaml"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("home", "reason"),
    [
        (
            {"bind_address": "not-an-address"},
            "homes[0].bind_address: 'not-an-address' is not an IP",
        ),
        ({"forwards": [[70000, 8080]]}, "homes[0].remote_port"),
        ({"private_key": "relative/key"}, "homes[0].private_key"),
        ({"forwards": "none"}, "--homes"),
    ],
)
def test_a_bad_home_is_named_and_nothing_starts(
    tmp_path: Path, home: dict[str, Any], reason: str
) -> None:
    done = _run(tmp_path, _plan(tmp_path, **home))
    assert done.returncode != 0
    assert reason in done.stderr, done.stderr


def test_a_plan_without_homes_or_a_field_says_so(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert "homes: must be a list of 1 to" in _run(tmp_path, {**plan, "homes": []}).stderr
    del plan["username"]
    assert "missing 'username'" in _run(tmp_path, plan).stderr
