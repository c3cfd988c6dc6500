"""Atomic writes (workers.common.files): the mode is exact from the first byte, a reader never
sees half a file, a failed or refused write leaves the old file and no temporary behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from workers.common.files import symlink_atomic, write_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize(("umask", "wanted"), [(0o077, 0o644), (0o000, 0o600), (0o022, 0o640)])
def test_the_file_gets_exactly_the_mode_asked_for_whatever_the_umask(
    tmp_path: Path, umask: int, wanted: int
) -> None:
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "f", "data", wanted)
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == wanted
    assert (tmp_path / "f").read_text() == "data"


def test_a_secret_is_never_readable_by_others_even_before_it_is_complete(tmp_path: Path) -> None:
    seen: list[int] = []
    target = tmp_path / "key"
    target.write_text("old")
    target.chmod(0o644)
    write_atomic(target, b"secret", 0o600, check=lambda staged: seen.append(mode(staged)))
    assert seen == [0o600]
    assert mode(target) == 0o600
    assert target.read_bytes() == b"secret"


def test_the_old_content_stays_in_place_until_the_new_one_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "cfg"
    target.write_text("old\n")
    observed: list[tuple[str, str]] = []

    def check(staged: Path) -> None:
        observed.append((target.read_text(), staged.read_text()))

    write_atomic(target, "new\n" * 1000, check=check)
    assert observed == [("old\n", "new\n" * 1000)]
    assert target.read_text() == "new\n" * 1000
    assert leftovers(tmp_path) == []


def test_a_failed_check_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "haproxy.cfg"
    target.write_text("good\n")

    def refuse(staged: Path) -> None:
        raise RuntimeError(f"{staged.name} is invalid")

    with pytest.raises(RuntimeError, match="is invalid"):
        write_atomic(target, "bad\n", check=refuse)
    assert target.read_text() == "good\n"
    assert leftovers(tmp_path) == []


def test_a_write_that_fails_half_way_leaves_no_half_file(tmp_path: Path) -> None:
    """A real failure mid-write: the file size limit (RLIMIT_FSIZE) stops os.write at 4 KiB."""
    target = tmp_path / "maps"
    target.write_text("old\n")
    script = (
        "import resource, signal, sys;"
        "from pathlib import Path;"
        "from workers.common.files import write_atomic;"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096));"
        "write_atomic(Path(sys.argv[1]), b'x' * 1_000_000)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "File too large" in done.stderr
    assert target.read_text() == "old\n"
    assert leftovers(tmp_path) == []


def test_replace_false_never_overwrites_a_file_that_exists(tmp_path: Path) -> None:
    target = tmp_path / "account.key"
    write_atomic(target, "first", 0o600, replace=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, "second", 0o600, replace=False)
    assert target.read_text() == "first"
    assert leftovers(tmp_path) == []


def test_a_symlink_at_the_path_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    (tmp_path / "f").symlink_to(elsewhere)
    write_atomic(tmp_path / "f", "mine")
    assert not (tmp_path / "f").is_symlink()
    assert (tmp_path / "f").read_text() == "mine"
    assert elsewhere.read_text() == "untouched"


def test_symlink_atomic_points_an_existing_link_at_a_new_target(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    link = tmp_path / "live"
    symlink_atomic("v1", link)
    assert os.readlink(link) == "v1"
    symlink_atomic("v2", link)
    assert os.readlink(link) == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live", "v1", "v2"]
