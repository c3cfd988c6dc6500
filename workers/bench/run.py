"""`cloudathome bench`: the data path, control plane, recovery, scale and certificate figures
of both sites on this machine, side by side in one run, written as docs/performance.{md,json,png}
and docs/scale-out.md. Needs root (the cloud gives each home a system user; wrk gets a private
/etc/hosts). Every process it starts is stopped by PID; every load is bounded in count and
time; all traffic stays on 127.0.0.1."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workers.bench import attack, certs, control, data, links, recovery, report, scale
from workers.bench.harness import FULL, QUICK, Bench, Plan, log
from workers.local.sites import run_state

STATE_BASE = Path("/var/lib/cloudathome-bench")
# In the order the report numbers them; `--only` takes these names.
SECTIONS = ("data", "control", "recovery", "scale", "certs", "links", "attack")
# In the order they run (recovery reuses a certificate of the certificates section), with
# where each lands in the results; performance.json keeps its own order.
RUN_ORDER: tuple[tuple[str, str, Callable[[Bench], dict[str, Any]]], ...] = (
    ("data", "data_path", data.measure),
    ("control", "control_plane", control.measure),
    ("scale", "scale", scale.measure),
    ("certs", "certificates", certs.measure),
    ("recovery", "recovery", recovery.measure),
    ("links", "links", links.measure),
    ("attack", "attack", attack.measure),
)
JSON_ORDER = (
    "run",
    "data_path",
    "control_plane",
    "scale",
    "recovery",
    "certificates",
    "links",
    "attack",
)


def machine() -> dict[str, Any]:
    def version(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout + done.stderr).strip().splitlines()[0]

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name"))
    return {
        "cores": os.cpu_count(),
        "cpu": next(models, "unknown"),
        "kernel": os.uname().release,
        "haproxy": version(["haproxy", "-v"]),
        "openssh": version(["ssh", "-V"]),
        "nginx": version(["nginx", "-v"]),
        "wrk": version(["wrk", "-v"]).split(" Copyright")[0],
        "python": sys.version.split()[0],
        "memory_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
        # What bounds connected homes besides memory (docs/scale-out.md).
        "pid_max": int(Path("/proc/sys/kernel/pid_max").read_text()),
        "pty_max": int(Path("/proc/sys/kernel/pty/max").read_text()),
    }


def _loadavg() -> list[float]:
    """Other work on the machine skews every figure: the report shows how much there was."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def run(root: Path, plan: Plan, only: str | None) -> dict[str, Any]:
    # The floods of "attack" take minutes and "links" runs a site of its own: a quick run
    # without --only leaves them out (the tests run each with --only).
    own = ("attack", "links")
    wanted = [only] if only else [s for s in SECTIONS if not (plan.quick and s in own)]
    facts = {
        "quick": plan.quick,
        "sections": wanted,
        "plan": asdict(plan),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
    }
    results: dict[str, Any] = {"run": facts}
    facts["loadavg_before"] = _loadavg()
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        bench = Bench(root, plan, stack)
        for name, key, measure in RUN_ORDER:
            if name in wanted:
                results[key] = measure(bench)
        log("· stopping everything")
        facts["home_user_prefix"] = bench.user_prefix
    facts["seconds"] = round(time.monotonic() - began, 1)
    facts["loadavg_after"] = _loadavg()
    results = {key: results[key] for key in JSON_ORDER if key in results}
    results["targets"] = report.targets(results) + results.get("attack", {}).get("targets", [])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudathome bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (under a minute)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs"),
        help="where performance.{md,json,png} and scale-out.md go (default docs/)",
    )
    parser.add_argument("--only", choices=SECTIONS, help="run one section only")
    parser.add_argument(
        "--state",
        type=Path,
        help=f"where the sites keep state and logs (default: a new folder under {STATE_BASE})",
    )
    args = parser.parse_args(argv)
    root = run_state("cloudathome bench", args.state, STATE_BASE)
    if root is None:
        return 2
    plan = QUICK if args.quick else FULL
    # SIGTERM unwinds like Ctrl-C: every site and tunnel started so far is stopped on the way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    log(f"cloudathome bench: state in {root} ({'quick' if plan.quick else 'full'} run)")
    try:
        results = run(root, plan, args.only)
    except Exception as exc:
        print(f"\ncloudathome bench: failed: {exc}\nlogs are in {root}", file=sys.stderr)
        return 1
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    written = report.write_all(results, out)
    print()
    print(report.table(results))
    if "attack" in results:
        print(attack.table(results["attack"]))
    log("\nwritten: " + ", ".join(str(p) for p in written))
    return 0
