"""CLOUDATHOME_TCP_PORTS when the cloud's settings load: a range meeting another listener of
the site stops it with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": "/usr/bin:/bin", "CLOUDATHOME_STATE_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-c", "import cloud.settings as s; print(s.TCP_PORTS)"],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_a_range_beside_every_listener_loads(tmp_path: Path) -> None:
    done = load(tmp_path, CLOUDATHOME_TCP_PORTS="10000-10999")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(10000, 10999)"
    assert load(tmp_path).stdout.strip() == "None"


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CLOUDATHOME_TCP_PORTS": "2050-2060"}, "tunnel ports 2000-2909"),
        ({"CLOUDATHOME_TCP_PORTS": "8000-8100"}, "CLOUDATHOME_WEB_PORT 8000"),
        ({"CLOUDATHOME_TCP_PORTS": "400-500"}, "CLOUDATHOME_HTTPS_PORT 443"),
        ({"CLOUDATHOME_TCP_PORTS": "8022"}, "CLOUDATHOME_SSH_PORT 8022"),
        ({"CLOUDATHOME_TCP_PORTS": "10999-10000"}, "not a range"),
        ({"CLOUDATHOME_TCP_PORTS": "ten-twenty"}, "expected a port range"),
    ],
)
def test_a_range_that_meets_another_listener_or_is_malformed_stops_the_cloud(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    done = load(tmp_path, **env)
    assert done.returncode != 0
    assert "CLOUDATHOME_TCP_PORTS: " in done.stderr and says in done.stderr, done.stderr[-500:]
