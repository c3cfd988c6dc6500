"""`cloudathome demo --exit`: the whole walkthrough on this machine, verified, as the
README's first command runs it."""

from __future__ import annotations

import pwd
import re
import subprocess
import sys

from tests.support import modes
from tests.support.sites import state_root


def test_demo_runs_every_step_verifies_the_page_and_leaves_no_home_user_behind() -> None:
    with state_root() as root:
        done = subprocess.run(
            [sys.executable, "-m", "workers.common.cli", "demo", "--exit", "--state", str(root / "demo")],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        assert re.search(r"All 10 steps passed in [\d.]+ s: shop\.demo\.test served through the edge, "
                         r"certificate issued by Pebble", out), out  # fmt: skip
        for label in ("cloud UI", "Home Console", "Flower", "the site"):
            assert f"  {label}" in out
        assert "  ssh_username : demo00_alice" in out
        assert not [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith("demo00_")]
        # Both sites ran the whole flow (SQLite, private Redis): every file has its mode.
        demo = root / "demo"
        assert (
            modes.walk(
                cloud=(demo / "cloud" / "state", modes.STATE),
                home=(demo / "home" / "home-state", modes.STATE),
                link=(demo / "home" / "config", modes.LINK),
                keys=(demo / "home" / "keys", modes.LINK),
                certs=(demo / "home" / "certs", modes.CERTS),
            )
            == []
        )
