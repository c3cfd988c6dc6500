"""The home's key pair: files, modes, refusal to overwrite, and both command lines (the
module's main() and the original home/scripts/generate_keys.py)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from home.keys import generate_keypair, main

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_private_key_is_0600_and_public_key_0644(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "id")
    assert mode(tmp_path / "id") == 0o600
    assert mode(tmp_path / "id.pub") == 0o644


def test_modes_do_not_depend_on_the_umask(tmp_path: Path, umask_zero: None) -> None:
    generate_keypair(tmp_path / "id")
    assert mode(tmp_path / "id") == 0o600
    assert mode(tmp_path / "id.pub") == 0o644


def test_missing_parent_directory_is_created_private(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "ssh" / "id")
    assert mode(tmp_path / "ssh") == 0o700


def test_public_key_is_the_one_ssh_keygen_derives_from_the_private_key(tmp_path: Path) -> None:
    line = generate_keypair(tmp_path / "id")
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(tmp_path / "id")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert line.split()[:2] == derived[:2]
    assert derived[0] == "ssh-ed25519"
    assert (tmp_path / "id.pub").read_text() == f"{line}\n"


def test_public_key_comment_names_this_host(tmp_path: Path) -> None:
    line = generate_keypair(tmp_path / "id")
    assert line.split()[2] == f"cloudathome@{socket.gethostname()}"


def test_existing_private_key_is_not_overwritten_without_force(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "id")
    before = (tmp_path / "id").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        generate_keypair(tmp_path / "id")
    assert (tmp_path / "id").read_bytes() == before


def test_an_existing_public_key_alone_also_blocks_generation(tmp_path: Path) -> None:
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAA someone-else\n")
    with pytest.raises(FileExistsError, match=r"id\.pub"):
        generate_keypair(tmp_path / "id")
    assert not (tmp_path / "id").exists()
    assert (tmp_path / "id.pub").read_text() == "ssh-ed25519 AAAA someone-else\n"


def test_force_replaces_the_key_pair(tmp_path: Path) -> None:
    first = generate_keypair(tmp_path / "id")
    second = generate_keypair(tmp_path / "id", force=True)
    assert first != second
    assert (tmp_path / "id.pub").read_text() == f"{second}\n"
    assert mode(tmp_path / "id") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["id", "id.pub"]  # no temp file left


def test_cli_prints_the_public_key_alone_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--output", str(tmp_path / "id")]) == 0
    out, err = capsys.readouterr()
    assert out == (tmp_path / "id.pub").read_text()
    assert str(tmp_path / "id") in err


def test_cli_fails_with_one_line_when_the_key_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_keypair(tmp_path / "id")
    assert main(["--output", str(tmp_path / "id")]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "already exists" in err


def test_cli_force_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = generate_keypair(tmp_path / "id")
    assert main(["--output", str(tmp_path / "id"), "--force"]) == 0
    assert capsys.readouterr().out.strip() not in ("", old)


def test_original_script_works_when_run_as_a_file_from_the_repo_root(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "home/scripts/generate_keys.py", "--output", str(tmp_path / "id")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (tmp_path / "id.pub").read_text()
    assert mode(tmp_path / "id") == 0o600
