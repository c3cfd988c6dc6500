"""`cloudathome demo --exit`: the whole walkthrough on this machine, verified, as the
README's first command runs it."""

from __future__ import annotations

import pwd
import re

from tests.support.sites import run_bounded, state_root
from workers.local.sites import cli


def test_demo_runs_every_step_verifies_the_page_and_leaves_no_home_user_behind() -> None:
    with state_root() as root:
        argv = cli("demo", "--exit", "--state", str(root / "demo"))
        done = run_bounded(argv, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        passed = r"All 10 steps passed in [\d.]+ s: shop\.demo\.test served through the edge, "
        assert re.search(passed + r"certificate issued by Pebble", out), out
        for label in ("cloud UI", "Home Console", "Flower", "the site"):
            assert f"  {label}" in out
        assert "  ssh_username : demo00_alice" in out
        assert not [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith("demo00_")]
