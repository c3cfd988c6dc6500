"""Section 1, the data path: one nginx HTTPS service reached directly, through HAProxy only,
through HAProxy + the original system's own tunnel (`ssh -N -T -R`, the peer row), and through
HAProxy + the product's SSH master connection; a 100 MiB download, keep-alive 1 KiB requests
and new TLS connections, with the CPU each process spent per request and the tunnel's memory;
and the home's three entries on that one connection loaded at once."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from workers.bench import tools as bt
from workers.bench.harness import (
    DATA_PATH_SOURCE_RATE,
    ENTRY_HOSTS,
    ORIGINAL_HOST,
    Bench,
    haproxy_pids,
    log,
    sshd_pids,
)
from workers.local.sites import CloudSite

RATIOS = ("download_MBps", "keepalive_rps", "newconn_per_s")
# CPU seconds -> the unit of the table: ms per download, µs per request or connection.
CPU_UNITS = {"download_MBps": 1e3, "keepalive_rps": 1e6, "newconn_per_s": 1e6}

Run = Callable[[], tuple[float, int]]  # -> (the figure, requests it took)
Groups = dict[str, Callable[[], list[int]]]  # the processes of a path, found when measured
Up = Callable[[], contextlib.AbstractContextManager[object]]  # what a path needs while measured


def measure(bench: Bench) -> dict[str, Any]:
    m, bare = bench.main(), bench.bare()
    https = m.cloud.https_port
    main_groups = _groups(m.cloud, lambda: [m.tunnel.pid], m.nginx.pid)
    # The original's ssh runs only while its path is measured (the cloud's sshd ends a
    # connection with no channel after 10 s): its pid is the running one's.
    original: list[int] = []

    @contextlib.contextmanager
    def original_up() -> Iterator[None]:
        with bench.original_tunnel(m) as pid:
            original[:] = [pid]
            yield
        original.clear()

    up: dict[str, Up] = {"edge_tunnel_original": original_up}
    # edge_tunnel_bare just before edge_tunnel in every repeat: the pair compared meets the
    # same moment of the machine.
    paths: dict[str, tuple[str, int, Groups]] = {
        "direct": ("direct.bench.test", m.direct_port, main_groups),
        "edge": ("edge.bench.test", https, main_groups),
        "edge_tunnel_original": (
            ORIGINAL_HOST,
            https,
            _groups(m.cloud, lambda: list(original), m.nginx.pid),
        ),
        "edge_tunnel_bare": (
            "tunnel.bench.test",
            bare.cloud.https_port,
            _groups(bare.cloud, lambda: [bare.tunnel.pid], m.nginx.pid),
        ),
        "edge_tunnel": (ENTRY_HOSTS[0], https, main_groups),
    }
    figures: dict[str, dict[str, list[float]]] = {p: {} for p in paths}
    cpu: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, dict[str, float]] = {}

    def measured(kind: str, path: str, run: Run) -> float:
        pids = {g: f() for g, f in paths[path][2].items()}
        before = {g: bt.cpu_seconds(p) for g, p in pids.items()}
        client_before = _children_cpu()
        value, requests_done = run()
        spent = {g: bt.cpu_seconds(p) - before[g] for g, p in pids.items()}
        spent["client"] = _children_cpu() - client_before
        bucket = cpu.setdefault(kind, {}).setdefault(path, {})
        for g, s in spent.items():
            bucket[g] = bucket.get(g, 0.0) + s
        total = counts.setdefault(kind, {})
        total[path] = total.get(path, 0) + requests_done
        return value

    def session(path: str) -> contextlib.AbstractContextManager[object]:
        return up.get(path, contextlib.nullcontext)()

    for path, (host, port, _) in paths.items():  # warm-up: caches, TLS tickets, page cache
        with session(path):
            bt.download(f"https://{host}:{port}/{bt.BIG_FILE}", host, port)
            if not bench.plan.quick:
                bench.wrk(f"https://{host}:{port}/{bt.SMALL_FILE}", 1)
    at_once: list[list[bt.WrkResult]] = []
    for rep in range(bench.plan.repeats):
        for path, (host, port, _) in paths.items():
            log(f"· data path {path} ({rep + 1}/{bench.plan.repeats})")
            with session(path):
                for kind, run in _runs(bench, host, port, figures[path]).items():
                    figures[path].setdefault(kind, []).append(measured(kind, path, run))
        log(f"· data path: {len(ENTRY_HOSTS)} entries at once ({rep + 1}/{bench.plan.repeats})")
        at_once.append(_entries_at_once(bench, https))

    result: dict[str, Any] = {"paths": {}, "ratios": {}, "cpu_us_per_request": {}}
    for path, values in figures.items():
        result["paths"][path] = {
            k: round(bt.median(v), 3) if k != "errors" else int(sum(v)) for k, v in values.items()
        }
    for path in [p for p in paths if p != "direct"]:
        result["ratios"][path] = {
            k: round(result["paths"][path][k] / result["paths"]["direct"][k], 3) for k in RATIOS
        }
    for kind, per_path in cpu.items():
        result["cpu_us_per_request"][kind] = {
            path: {
                g: round(s * CPU_UNITS[kind] / max(1, counts[kind][path]), 2)
                for g, s in spent.items()
            }
            for path, spent in per_path.items()
        }
    result["cpu_us_per_request"]["download_MBps_unit"] = "ms of CPU per 100 MiB download"
    result["features"] = _features(result)
    # What a user of the original gains: our tunnel's figures over the original's, same run.
    ours, theirs = result["paths"]["edge_tunnel"], result["paths"]["edge_tunnel_original"]
    result["gain_over_original"] = {
        k: round(ours[k] / theirs[k], 3) if theirs[k] else 0.0 for k in RATIOS
    }
    result["entries_at_once"] = _at_once_figures(
        bench, at_once, result["paths"]["edge_tunnel"]["keepalive_rps"]
    )
    _listener, sessions = sshd_pids(m.cloud)
    ssh_rss, ssh_pss = bt.memory_kb(m.tunnel.pid)
    sess = [bt.memory_kb(p) for p in sessions]
    result["tunnel_memory_kb"] = {
        "ssh_rss": ssh_rss,
        "ssh_pss": ssh_pss,
        "sshd_session_rss": sum(r for r, _ in sess),
        "sshd_session_pss": sum(p for _, p in sess),
        "sshd_session_processes": len(sessions),
    }
    result["settings"] = {
        "wrk_threads": 1,
        "wrk_connections": bench.plan.connections,
        "wrk_seconds": bench.plan.wrk_seconds,
        "repeats": bench.plan.repeats,
        "download_bytes": 100 * bt.MIB,
        "edge_source_rate": DATA_PATH_SOURCE_RATE,
    }
    return result


def _runs(bench: Bench, host: str, port: int, figures: dict[str, list[float]]) -> dict[str, Run]:
    """The three measurements of one path, in order; wrk's latencies land in `figures`."""
    small = f"https://{host}:{port}/{bt.SMALL_FILE}"

    def download() -> tuple[float, int]:
        return bt.download(f"https://{host}:{port}/{bt.BIG_FILE}", host, port), 1

    def keepalive() -> tuple[float, int]:
        r = bench.wrk(small, bench.plan.wrk_seconds)
        figures.setdefault("keepalive_p50_ms", []).append(r.p50_ms)
        figures.setdefault("keepalive_p99_ms", []).append(r.p99_ms)
        figures.setdefault("errors", []).append(r.errors)
        return r.rps, r.requests

    def new_connections() -> tuple[float, int]:
        r = bench.wrk(small, bench.plan.wrk_seconds, new_connections=True)
        figures.setdefault("newconn_p99_ms", []).append(r.p99_ms)
        figures.setdefault("errors", []).append(r.errors)
        return r.rps, r.requests

    return {"download_MBps": download, "keepalive_rps": keepalive, "newconn_per_s": new_connections}


def _split(total: int, parts: int) -> list[int]:
    """`total` connections in `parts` as even as they go (8 in 3: 3, 3, 2)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _entries_at_once(bench: Bench, https: int) -> list[bt.WrkResult]:
    """Keep-alive load on every entry of the main home at once, one wrk per hostname (all on
    the home's one master connection), the single-entry run's connections split between
    them; each wrk bounded by its own -d and timeout."""
    split = _split(bench.plan.connections, len(ENTRY_HOSTS))

    def one(host: str, connections: int) -> bt.WrkResult:
        return bt.wrk(
            f"https://{host}:{https}/{bt.SMALL_FILE}",
            seconds=bench.plan.wrk_seconds,
            connections=connections,
            hosts_file=bench.hosts,
            script_dir=bench.root,
        )

    with ThreadPoolExecutor(len(ENTRY_HOSTS)) as pool:
        return list(pool.map(one, ENTRY_HOSTS, split))


def _at_once_figures(
    bench: Bench, runs: list[list[bt.WrkResult]], one_entry_rps: float
) -> dict[str, Any]:
    """The sum of the entries' req/s (median over the repeats), each entry's, its ratio to
    the single entry's keep-alive req/s of this run, and every error."""
    total = bt.median([sum(r.rps for r in rep) for rep in runs])
    return {
        "entries": len(ENTRY_HOSTS),
        "hosts": list(ENTRY_HOSTS),
        "connections": _split(bench.plan.connections, len(ENTRY_HOSTS)),
        "keepalive_rps": round(total, 3),
        "keepalive_rps_per_entry": [
            round(bt.median([rep[i].rps for rep in runs]), 3) for i in range(len(ENTRY_HOSTS))
        ],
        "keepalive_p99_ms": round(bt.median([max(r.p99_ms for r in rep) for rep in runs]), 3),
        "ratio_to_one_entry": round(total / one_entry_rps, 3) if one_entry_rps else 0.0,
        "errors": sum(r.errors for rep in runs for r in rep),
    }


def _groups(cloud: CloudSite, tunnel: Callable[[], list[int]], nginx_pid: int) -> Groups:
    return {
        "haproxy": lambda: haproxy_pids(cloud),
        "sshd": lambda: sshd_pids(cloud)[1],
        "ssh": tunnel,
        "service": lambda: [nginx_pid, *bt.descendants(nginx_pid)],
    }


def _features(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The edge's per-connection features (traffic counters, an allowlist), on against off: each figure's
    ratio, and the CPU per request of the whole path (every process, the client's too)."""
    on, off = result["paths"]["edge_tunnel"], result["paths"]["edge_tunnel_bare"]
    out: dict[str, dict[str, float]] = {}
    for kind in RATIOS:
        spent = result["cpu_us_per_request"][kind]
        cpu_on, cpu_off = (
            sum(spent["edge_tunnel"].values()),
            sum(spent["edge_tunnel_bare"].values()),
        )
        out[kind] = {
            "off": off[kind],
            "on": on[kind],
            "ratio": round(on[kind] / off[kind], 3) if off[kind] else 0.0,
            "cpu_off": round(cpu_off, 2),
            "cpu_on": round(cpu_on, 2),
            "cpu_ratio": round(cpu_on / cpu_off, 3) if cpu_off else 0.0,
            "haproxy_cpu_off": spent["edge_tunnel_bare"]["haproxy"],
            "haproxy_cpu_on": spent["edge_tunnel"]["haproxy"],
        }
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
