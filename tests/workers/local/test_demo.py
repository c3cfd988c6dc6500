"""`cloudathome demo --exit`: the whole walkthrough on this machine, verified, as the
README's first command runs it."""

from __future__ import annotations

import pwd
import re

from tests.support import modes
from tests.support.sites import run_bounded, state_root
from workers.local.sites import cli


def test_demo_runs_every_step_verifies_the_page_and_leaves_no_home_user_behind() -> None:
    with state_root() as root:
        argv = cli("demo", "--exit", "--state", str(root / "demo"))
        done = run_bounded(argv, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        out = done.stdout
        passed = r"All 11 steps passed in [\d.]+ s: shop\.demo\.test served through the edge, "
        assert re.search(passed + r"certificate issued by Pebble", out), out
        for label in ("cloud UI", "Home Console", "Flower", "the site"):
            assert f"  {label}" in out
        assert "  ssh_username : demo00_alice" in out
        assert "its names    : alice.homes.demo.test and every name below it" in out
        assert "· waiting for the TXT record _cloudathome.shop.demo.test" in out
        assert "· creating _cloudathome.shop.demo.test TXT " in out
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
