"""`cloudathome bench --quick`: every section runs against the real sites (HAProxy, sshd, the
product's ssh tunnel, nginx, wrk, Pebble) and lands in the JSON with numbers, the docs are
written, and no home's system user is left behind."""

from __future__ import annotations

import json
import pwd
from pathlib import Path
from typing import Any

import pytest

from tests.support.sites import run_bounded, state_root
from workers.local.sites import cli


def _number(results: dict[str, Any], *path: str) -> float:
    node: Any = results
    for key in path:
        assert isinstance(node, dict) and key in node, f"missing {'.'.join(path)}"
        node = node[key]
    assert isinstance(node, (int, float)) and not isinstance(node, bool), (path, node)
    return float(node)


def cpu_of(path: str) -> tuple[str, ...]:
    return ("cpu_us_per_request", "keepalive_rps", path)


def test_quick_bench_measures_every_section_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    with state_root() as root:
        argv = cli("bench", "--quick", "--out", str(out), "--state", str(root / "bench"))
        # A guard against a hung run, not a timing: ~90 s alone, longer beside other suites.
        done = run_bounded(argv, timeout=240)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "performance.json").read_text())

    paths = ("direct", "edge", "edge_tunnel_original", "edge_tunnel_bare", "edge_tunnel")
    assert list(results["data_path"]["paths"]) == list(paths)
    for path in paths:
        for figure in ("download_MBps", "keepalive_rps", "keepalive_p99_ms", "newconn_per_s"):
            assert _number(results, "data_path", "paths", path, figure) > 0
        assert _number(results, "data_path", "paths", path, "errors") == 0
    # The peer row: the original's own tunnel (ssh -N -T -R), its own ssh measured.
    for kind in ("download_MBps", "keepalive_rps", "newconn_per_s"):
        assert 0 < _number(results, "data_path", "ratios", "edge_tunnel_original", kind) < 1.5
        assert _number(results, "data_path", "gain_over_original", kind) > 0
    assert _number(results, "data_path", *cpu_of("edge_tunnel_original"), "ssh") > 0
    # The home's three entries on its one master connection, loaded at once.
    at_once = results["data_path"]["entries_at_once"]
    assert at_once["entries"] == 3 and sum(at_once["connections"]) == 8
    assert all(rps > 0 for rps in at_once["keepalive_rps_per_entry"])
    assert _number(at_once, "keepalive_rps") == pytest.approx(
        sum(at_once["keepalive_rps_per_entry"]), rel=0.01
    )
    assert 0 < _number(at_once, "ratio_to_one_entry") < 10
    assert _number(at_once, "errors") == 0
    # The per-connection features on (main site) against off (a second site), same run.
    for kind in ("download_MBps", "keepalive_rps", "newconn_per_s"):
        assert _number(results, "data_path", "features", kind, "cpu_ratio") > 0
        assert _number(results, "data_path", "features", kind, "haproxy_cpu_off") > 0
    report = (out / "performance.md").read_text()
    assert "The per-connection features, on against off" in report
    assert "| edge_tunnel_original |" in report
    assert "| edge_tunnel, 3 entries at once |" in report
    assert "What a user of the original gains" in report
    assert 0 < _number(results, "data_path", "ratios", "edge_tunnel", "keepalive_rps") < 1.5
    cpu = ("data_path", *cpu_of("edge_tunnel"))
    assert _number(results, *cpu, "sshd") > 0
    assert _number(results, *cpu, "ssh") > 0
    assert _number(results, "data_path", "tunnel_memory_kb", "ssh_rss") > 0
    assert _number(results, "data_path", "tunnel_memory_kb", "sshd_session_rss") > 0
    assert _number(results, "control_plane", "create_to_routable", "n") == 10
    assert _number(results, "control_plane", "create_to_routable", "p99_ms") > 0
    assert _number(results, "control_plane", "delete_to_unreachable", "p50_ms") > 0
    assert _number(results, "control_plane", "register_to_tunnel", "median_s") > 0
    assert _number(results, "recovery", "kill_to_traffic", "median_s") > 0
    assert _number(results, "scale", "mappings") == 500
    assert _number(results, "scale", "sync_from_scratch_s") > 0
    assert _number(results, "scale", "change_to_routable", "p50_ms") > 0
    assert _number(results, "scale", "haproxy_rss_kb", "large") > 0
    assert _number(results, "scale", "reloads") == 0
    assert _number(results, "scale", "provision", "system_users_created") == 5
    assert _number(results, "scale", "provision", "system_users_left") == 0
    assert _number(results, "certificates", "add_to_cert_on_disk", "median_s") > 0
    assert {t["name"] for t in results["targets"]} >= {
        "mapping created -> routable, p99",
        "tunnel killed -> traffic back, median",
    }

    assert "## 1. Data path" in report and "## 5. Certificates" in report
    assert (out / "performance.png").read_bytes().startswith(b"\x89PNG")
    assert "full edge sync of 500 routes" in (out / "scale-out.md").read_text()
    prefix = results["run"]["home_user_prefix"]
    assert prefix and not [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith(prefix)]


def test_the_attack_section_trips_every_limit_while_the_victims_are_probed(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    with state_root() as root:
        argv = cli("bench", "--quick", "--only", "attack", "--out", str(out))
        done = run_bounded([*argv, "--state", str(root / "bench")], timeout=400)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    attack = json.loads((out / "performance.json").read_text())["attack"]
    floods = attack["floods"]
    # Counters, not timings: each flood met the cap it aims at.
    assert floods["edge_one_source"]["attack"]["opened"] == 256  # CLOUDATHOME_EDGE_SOURCE_CONN
    assert floods["edge_one_source"]["attack"]["refused"] > 0
    assert floods["edge_many_sources"]["attack"]["opened"] == 2000  # CLOUDATHOME_EDGE_ROUTE_CONN
    assert floods["edge_many_sources"]["attack"]["refused"] > 0
    assert floods["ssh_preauth"]["attack"]["refused"] > 0  # PerSourceMaxStartups dropped them
    assert floods["web_slowloris"]["attack"]["opened"] >= 100
    for name, figures in floods.items():
        assert figures["n"] > 0, name
        assert 0 <= _number(figures, "served_share") <= 1
    assert _number(attack, "ssh_storm", "n") == 20
    assert {t["name"] for t in attack["targets"]} >= {
        "under attack, edge_one_source: served_share",
        "under attack, web_slowloris: p99_ms",
    }
    assert not [u.pw_name for u in pwd.getpwall() if u.pw_name.endswith(("_attacked", "_victim"))]


def test_the_links_section_connects_every_home_and_brings_them_back_after_a_storm(
    tmp_path: Path,
) -> None:
    out = tmp_path / "docs"
    with state_root() as root:
        argv = cli("bench", "--quick", "--only", "links", "--out", str(out))
        done = run_bounded([*argv, "--state", str(root / "bench")], timeout=180)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "performance.json").read_text())
    links = results["links"]
    assert links["homes"] == 20 and links["forwards_per_home"] == 3
    # One connection per home at both ends: one ssh per home, whatever its forwards.
    assert links["home_ssh_processes"] == 20
    assert links["cloud_session_processes"] >= 20
    assert links["served_after_connect"] == "5/5"
    assert links["storm"]["served_after"] == "5/5"
    assert links["storm"]["killed_processes"] > links["cloud_session_processes"]
    for figure in ("cloud_pss_per_home_mb", "home_ssh_rss_per_home_mb", "connect_all_s"):
        assert _number(links, figure) > 0
    assert _number(links, "storm", "all_back_s") >= _number(
        links, "storm", "sshd_listening_again_s"
    )
    assert {t["name"] for t in results["targets"]} >= {
        "connected homes: cloud memory per home (PSS of its sshd session)",
        "reconnect storm: every home's forwards back after the cloud's sshd restarted",
    }
    assert "## 6. Connected homes" in (out / "performance.md").read_text()
    account = results["run"]["home_user_prefix"] + "links"  # the site's one SSH account
    assert account not in {u.pw_name for u in pwd.getpwall()}
