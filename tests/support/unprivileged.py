"""An ordinary user for tests of what must not need root (the Home Console, post-renewal
actions): created for a block and removed afterwards with every process it left, whatever
the test did, plus a Python interpreter that user can execute."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from workers.local.procs import Account, wait_for

TEST_ROOT = Path(os.environ.get("CLOUDATHOME_TEST_ROOT", "/var/lib/cloudathome-tests"))


@dataclass(frozen=True)
class User(Account):
    name: str

    def own(self, *paths: Path) -> None:
        """Hand folders the test prepared as root to the user, as if the user had made them."""
        for path in paths:
            os.lchown(path, self.uid, self.gid)


def _reachable_by_others(path: str) -> bool:
    """Every folder above `path` is searchable by others and the file is executable by them."""
    real = Path(os.path.realpath(path))
    return all(p.stat().st_mode & 0o001 for p in [real, *real.parents])


def python_for_others() -> str:
    """This interpreter when any user may execute it; otherwise (pyenv under /root) a venv of
    the system's Python of the same version that sees this venv's packages, built once."""
    if _reachable_by_others(sys.executable):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(f"python{version}", path="/usr/bin:/usr/local/bin")
    if system is None:
        raise RuntimeError(f"no python{version} that other users can run (apt install python3)")
    site = sysconfig.get_paths()["purelib"]
    key = hashlib.sha256(f"{system}:{site}".encode()).hexdigest()[:12]
    TEST_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = TEST_ROOT / f"python-{key}"
    with open(TEST_ROOT / f"python-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "bin" / "python").exists():
            staging = TEST_ROOT / f".python-{key}-{secrets.token_hex(4)}"
            subprocess.run([system, "-m", "venv", "--without-pip", str(staging)], check=True)
            purelib = subprocess.run(
                [str(staging / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True, capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            # addsitedir also reads that folder's .pth files (the editable install's finder).
            Path(purelib, "cloudathome-tests.pth").write_text(
                f"import site; site.addsitedir({site!r})\n"
            )
            # venv wrote the links to the final name already; only the folder moves.
            os.rename(staging, target)
    return str(target / "bin" / "python")


def _pids_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                found.append(int(entry.name))
    return found


@contextlib.contextmanager
def system_user(prefix: str = "cahu", login_shell: str = "/usr/sbin/nologin") -> Iterator[User]:
    """A fresh system user with its own group and a home folder of its own (0700), removed
    afterwards after its processes (tunnels outlive the console by design) are ended; a
    `login_shell` lets it run commands over ssh."""
    name = f"{prefix}{secrets.token_hex(3)}"
    TEST_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    home = TEST_ROOT / f"home-{name}"
    subprocess.run(
        ["useradd", "--system", "--user-group", "--shell", login_shell,
         "--home-dir", str(home), "--create-home", "--comment", "cloudathome tests", name],
        check=True, capture_output=True,
    )  # fmt: skip
    entry = pwd.getpwnam(name)
    try:
        home.chmod(0o700)
        yield User(entry.pw_uid, entry.pw_gid, python_for_others(), home, name)
    finally:
        for pid in _pids_of(entry.pw_uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _pids_of(entry.pw_uid), timeout=10, what=f"processes of {name}")
        subprocess.run(["userdel", "--remove", name], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
