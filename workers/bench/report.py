"""What `cloudathome bench` writes: the targets checked against the figures, the
printed table, docs/performance.{json,md,png} and docs/scale-out.md (the plan for more than one
edge, with this run's numbers). Pure formatting: nothing here measures."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The prototype (docs/architecture.md): the's ratios to direct (download / keep-alive req/s / new TLS).
PROTOTYPE = {
    "edge": {"download_MBps": 0.69, "keepalive_rps": 0.64, "newconn_per_s": 0.59},
    "edge_tunnel": {"download_MBps": 0.42, "keepalive_rps": 0.36, "newconn_per_s": 0.40},
}
METRICS = {
    "download_MBps": "100 MiB download",
    "keepalive_rps": "keep-alive 1 KiB req/s",
    "newconn_per_s": "new TLS connections/s",
}


@dataclass(frozen=True)
class Target:
    name: str
    path: tuple[str, ...]  # where the figure lives in the results
    op: str  # ">=" or "<="
    limit: float
    unit: str
    why: str  # shown when missed: the cause as measured, and the fix


TARGETS = (
    Target(
        "edge+tunnel 100 MiB download, ratio to direct",
        ("data_path", "ratios", "edge_tunnel", "download_MBps"),
        ">=",
        0.40,
        "",
        "Two extra encryptions (SSH on both ends) and three copies through loopback share two "
        "cores with curl and nginx; the CPU table shows ssh and sshd each spending about as "
        "much per byte as nginx. Fix: more cores (ssh and sshd are single-threaded per "
        "tunnel), AES-NI (aes128-gcm is already first), or a second tunnel per home.",
    ),
    Target(
        "edge+tunnel keep-alive 1 KiB req/s, ratio to direct",
        ("data_path", "ratios", "edge_tunnel", "keepalive_rps"),
        ">=",
        0.35,
        "",
        "CPU-bound on {cores} cores: through edge + tunnel a keep-alive request costs "
        "{cpu_us:.0f} µs of CPU in all (HAProxy, sshd, ssh, nginx and wrk, table below) "
        "against {direct_cpu:.0f} µs direct, and the run kept {busy:.2f} of the {cores} cores "
        "busy; with the load generator on the same cores the ratio cannot exceed about "
        "{bound:.2f}. sshd and ssh each spend about as much per request as nginx itself, and "
        "a fast direct path ({direct_rps:,.0f} req/s here) makes the ratio harsher. Not "
        "latency: p50 is {p50} ms and p99 {p99} ms (no 40 ms Nagle stall). Fix: more cores "
        "than busy processes (a real edge has no load generator on it), or fewer bytes per "
        "request through SSH (compression off is already the default).",
    ),
    Target(
        "edge+tunnel keep-alive p99",
        ("data_path", "paths", "edge_tunnel", "keepalive_p99_ms"),
        "<=",
        3.0,
        " ms",
        "Scheduling, not the path: the direct path's own p99 was {direct_p99} ms on this "
        "machine (load average {load} before -> after; other test suites were running). "
        "With four hops each waiting for a core, the tail multiplies. Fix: a quiet machine, "
        "more cores than busy processes; p50 ({p50} ms) shows the path itself.",
    ),
    Target(
        "edge+tunnel new TLS connections/s, ratio to direct",
        ("data_path", "ratios", "edge_tunnel", "newconn_per_s"),
        ">=",
        0.35,
        "",
        "Each new connection is a new SSH channel (open, confirm, window) on top of the TCP "
        "and TLS handshakes. Fix: more cores; the channel setup is in OpenSSH.",
    ),
    Target(
        "edge+tunnel keep-alive, CPU per request with the per-connection features / without",
        ("data_path", "features", "keepalive_rps", "cpu_ratio"),
        "<=",
        1.05,
        "",
        "HAProxy spent {ka_haproxy_on} µs per request with the features against "
        "{ka_haproxy_off} µs without; the rest of the difference is the other processes "
        "between two runs on a shared machine (load average {load}). Fix: if HAProxy's share "
        "grew, `CLOUDATHOME_EDGE_TRAFFIC_COUNTERS=0`; otherwise more repeats or a quiet machine.",
    ),
    Target(
        "edge+tunnel new TLS connections, CPU per connection with the features / without",
        ("data_path", "features", "newconn_per_s", "cpu_ratio"),
        "<=",
        1.05,
        "",
        "HAProxy spent {nc_haproxy_on} µs per connection with the features against "
        "{nc_haproxy_off} µs without; the rest of the difference is the other processes "
        "between two runs on a shared machine (load average {load}). Fix: if HAProxy's share "
        "grew, `CLOUDATHOME_EDGE_TRAFFIC_COUNTERS=0`; otherwise more repeats or a quiet machine.",
    ),
    Target(
        "mapping created -> routable, p99",
        ("control_plane", "create_to_routable", "p99_ms"),
        "<=",
        250,
        " ms",
        "The route goes through a Celery task after the commit; the worker's pick-up and the "
        "full diff against the live map dominate. Fix: apply the one `add map` in the "
        "request (the reconciler stays as the safety net).",
    ),
    Target(
        "tunnel killed -> traffic back, median",
        ("recovery", "kill_to_traffic", "median_s"),
        "<=",
        10,
        " s",
        "The supervisor's period plus its backoff decide it. Fix: a shorter supervise "
        "period, or respawning from the process' exit (pidfd) instead of polling.",
    ),
    Target(
        "10,000 mappings: one-mapping change -> routable, p50",
        ("scale", "change_to_routable", "p50_ms"),
        "<=",
        50,
        " ms",
        "HAProxy needs {add_ms} ms for the `add map`; the rest is the API call, the commit "
        "and the Celery hop to the edge_update task (one `get map` lookup and one add/set/del "
        "per scheme, then the map files by a coalescing writer). Fix: look at the worker's "
        "queue (a full sync of {mappings} routes holds the edge lock for {noop_s} s).",
    ),
    Target(
        "10,000 mappings: HAProxy reloads during changes",
        ("scale", "reloads"),
        "<=",
        0,
        "",
        "A new HAProxy worker appeared: something reloaded the edge. Fix: find the caller.",
    ),
)


LINK_TARGETS = (
    Target(
        "connected homes: cloud memory per home (PSS of its sshd session)",
        ("links", "cloud_pss_per_home_mb"),
        "<=",
        5,
        " MB",
        "Each home's connection is {link_procs} processes at the cloud (sshd's privileged "
        "monitor, its child running as the account, the forced command's sleep). Fix: fewer "
        "processes per session (a forced command that is sshd's own, such as `internal-sftp` "
        "refusing everything, would drop the sleep).",
    ),
    Target(
        "connected homes: ssh RSS per home",
        ("links", "home_ssh_rss_per_home_mb"),
        "<=",
        10,
        " MB",
        "ssh holds {link_ssh} processes for {link_homes} homes. Fix: one master per home is "
        "the floor; a client with fewer libraries linked (OpenSSH built without Kerberos).",
    ),
    Target(
        "reconnect storm: every home's forwards back after the cloud's sshd restarted",
        ("links", "storm", "all_back_s"),
        "<=",
        60,
        " s",
        "sshd was listening again after {storm_listener_s} s; the rest is {link_homes} "
        "handshakes on {cores} cores, and homes that sshd's MaxStartups dropped backing off "
        "(1 s doubling, with jitter). Fix: a higher CLOUDATHOME_SSH_MAX_STARTUPS, more cores, "
        "or fewer homes per edge node (docs/scale-out.md).",
    ),
)


def _get(results: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def _why_figures(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the reasons quote, so each reason is this run's, not a guess."""
    run = results.get("run", {})
    load = run.get("loadavg_before", [0.0])[:1] + run.get("loadavg_after", [0.0])[:1]
    facts: dict[str, Any] = {
        "cores": run.get("machine", {}).get("cores", "?"),
        "load": " -> ".join(f"{x:.1f}" for x in load),
        **dict.fromkeys(("busy", "cpu_us", "direct_cpu", "bound", "direct_rps"), 0.0),
        **dict.fromkeys(("p50", "p99", "direct_p99", "add_ms", "noop_s", "mappings"), "?"),
        **dict.fromkeys(("link_homes", "link_procs", "link_ssh", "storm_listener_s"), "?"),
        **dict.fromkeys(
            ("ka_haproxy_on", "ka_haproxy_off", "nc_haproxy_on", "nc_haproxy_off"), "?"
        ),
    }
    data = results.get("data_path")
    if data:
        for short, kind in (("ka", "keepalive_rps"), ("nc", "newconn_per_s")):
            feature = data["features"][kind]
            facts[f"{short}_haproxy_on"] = f"{feature['haproxy_cpu_on']:.1f}"
            facts[f"{short}_haproxy_off"] = f"{feature['haproxy_cpu_off']:.1f}"
        tunnel = data["paths"]["edge_tunnel"]
        spent = data["cpu_us_per_request"]["keepalive_rps"]["edge_tunnel"]
        facts["cpu_us"] = sum(spent.values())
        facts["busy"] = facts["cpu_us"] * tunnel["keepalive_rps"] / 1e6
        facts["p50"], facts["p99"] = tunnel["keepalive_p50_ms"], tunnel["keepalive_p99_ms"]
        facts["direct_p99"] = data["paths"]["direct"]["keepalive_p99_ms"]
        facts["direct_rps"] = data["paths"]["direct"]["keepalive_rps"]
        facts["direct_cpu"] = sum(data["cpu_us_per_request"]["keepalive_rps"]["direct"].values())
        if facts["cpu_us"]:
            facts["bound"] = facts["direct_cpu"] / facts["cpu_us"]
    links = results.get("links")
    if links:
        facts["link_homes"] = f"{links['homes']:,}"
        facts["link_procs"] = f"{links['cloud_session_processes'] / links['homes']:.1f}"
        facts["link_ssh"] = links["home_ssh_processes"]
        facts["storm_listener_s"] = links["storm"]["sshd_listening_again_s"]
    scale = results.get("scale")
    if scale:
        facts["add_ms"] = scale["runtime_api_ms"]["add_map_ms"]
        facts["noop_s"] = scale["sync_noop_s"]
        facts["mappings"] = f"{scale['mappings']:,}"
    return facts


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target whose figure this run measured, with met/missed and, if missed, why."""
    facts = _why_figures(results)
    checked = []
    for t in (*TARGETS, *LINK_TARGETS):
        value = _get(results, t.path)
        if value is None:
            continue
        met = value >= t.limit if t.op == ">=" else value <= t.limit
        why = "" if met else t.why.format(**facts)
        checked.append(
            {"name": t.name, "value": value, "op": t.op, "limit": t.limit, "unit": t.unit}
            | {"met": met, "why": why}
        )
    return checked


def goal(path: tuple[str, ...]) -> float:
    """The limit of the target on the figure at `path` (the plot draws it)."""
    return next(t.limit for t in TARGETS if t.path == path)


# --- the printed table ----------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# The printed table's columns: (heading, width, figure, format, the ratio to direct or not).
_COLUMNS = (
    ("MB/s", 8, "download_MBps", ".1f", False),
    ("ratio", 6, "download_MBps", ".2f", True),
    ("req/s", 9, "keepalive_rps", ".0f", False),
    ("ratio", 6, "keepalive_rps", ".2f", True),
    ("p50 ms", 7, "keepalive_p50_ms", ".2f", False),
    ("p99 ms", 7, "keepalive_p99_ms", ".2f", False),
    ("conn/s", 8, "newconn_per_s", ".0f", False),
    ("ratio", 6, "newconn_per_s", ".2f", True),
)


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    data = results.get("data_path")
    if data:
        lines.append(" ".join([f"{'path':<20}", *(f"{c[0]:>{c[1]}}" for c in _COLUMNS)]))
        for path, fig in data["paths"].items():
            ratios = data["ratios"].get(path, {})
            cells = [
                f"{ratios.get(key, 1) if ratio else fig[key]:>{width}{form}}"
                for _, width, key, form, ratio in _COLUMNS
            ]
            lines.append(" ".join([f"{path:<20}", *cells]))
        if "entries_at_once" in data:
            lines.append(_at_once_line(data))
        lines.append("")
    for t in results.get("targets", []):
        mark = "met   " if t["met"] else "MISSED"
        measured = f"{_fmt(t['value'])}{t['unit']}"
        lines.append(f"{mark} {t['name']}: {measured} (target {t['op']} {t['limit']:g}{t['unit']})")
    return "\n".join(lines)


def _at_once_line(data: dict[str, Any]) -> str:
    e = data["entries_at_once"]
    return (
        f"{e['entries']} entries at once on the one master connection: "
        f"{e['keepalive_rps']:,.0f} keep-alive req/s in all "
        f"({' + '.join(f'{r:,.0f}' for r in e['keepalive_rps_per_entry'])}), "
        f"{e['ratio_to_one_entry']:.2f} x one entry's, {e['errors']} errors"
    )


# --- files ----------------------------------------------------------------------------------


def write_all(results: dict[str, Any], out: Path) -> list[Path]:
    json_path = out / "performance.json"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    written = [json_path]
    png = out / "performance.png"
    if "data_path" in results and plot(results, png):
        written.append(png)
    md = out / "performance.md"
    md.write_text(markdown(results, png.name if png in written else None))
    written.append(md)
    if "data_path" in results and "scale" in results:
        scale_out = out / "scale-out.md"
        scale_out.write_text(scale_out_plan(results))
        written.append(scale_out)
    return written


def plot(results: dict[str, Any], path: Path) -> bool:
    """Bar chart of the ratios to direct against the targets; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ratios = results["data_path"]["ratios"]
    labels = list(METRICS.values())
    keys = list(METRICS)
    x = range(len(keys))
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    width = 0.2
    bars = (  # (offset, ratios, label, color)
        (-1.5 * width, ratios["edge"], "edge only (HAProxy)", "#6baed6"),
        (-0.5 * width, ratios["edge_tunnel_original"], "edge + the original's ssh -N", "#fd8d3c"),
        (0.5 * width, ratios["edge_tunnel"], "edge + SSH master (ours)", "#2171b5"),
        (1.5 * width, PROTOTYPE["edge_tunnel"], "prototype, edge + tunnel", "#bdbdbd"),
    )
    for offset, values, label, color in bars:
        ax.bar([i + offset for i in x], [values[k] for k in keys], width, label=label, color=color)
    for i, k in enumerate(keys):
        ax.hlines(
            goal(("data_path", "ratios", "edge_tunnel", k)),
            i - 0.45,
            i + 0.45,
            colors="#d62728",
            linestyles="dashed",
            label="target (edge + tunnel)" if i == 0 else "_nolegend_",
        )
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("fraction of direct")
    ax.set_ylim(0, 1.05)
    ax.set_title("cloudathome data path, ratio to direct (higher is better)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _load(run: dict[str, Any], key: str) -> str:
    return " / ".join(f"{x:.2f}" for x in run.get(key, [])) or "unknown"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def markdown(results: dict[str, Any], png: str | None) -> str:
    sections = (
        _md_run(results["run"]),
        _md_targets(results.get("targets", [])),
        _md_data(results["data_path"], png) if "data_path" in results else [],
        _md_control(results["control_plane"]) if "control_plane" in results else [],
        _md_recovery(results["recovery"]) if "recovery" in results else [],
        _md_scale(results["scale"]) if "scale" in results else [],
        _md_certs(results["certificates"]) if "certificates" in results else [],
        _md_links(results["links"]) if "links" in results else [],
    )
    return "\n".join(line for section in sections for line in section)


def _md_run(run: dict[str, Any]) -> list[str]:
    m = run["machine"]
    return [
        "# Performance",
        "",
        "Generated by `cloudathome bench`"
        + (" --quick" if run["quick"] else "")
        + f" on {run['started']} in {run['seconds']} s; figures in `performance.json`. "
        "Run it again (`make bench`, as root) and compare. Everything runs on this one "
        f"machine over loopback: **the load generators (wrk, curl) share the {m['cores']} "
        "cores with HAProxy, sshd, ssh and nginx**, so absolute numbers are a floor and the "
        "ratios to the direct path are the figures to compare.",
        "",
        "## Machine",
        "",
        *_table(
            ["cores", "CPU", "kernel", "memory"],
            [[str(m["cores"]), m["cpu"], m["kernel"], f"{m['memory_mb']} MB"]],
        ),
        "",
        f"{m['haproxy']}; {m['openssh']}; {m['nginx']}; {m['wrk']}; Python {m['python']}.",
        "",
        f"Load average (1/5/15 min) before the run: {_load(run, 'loadavg_before')}; after: "
        f"{_load(run, 'loadavg_after')}. Anything well above 0 means other work shared the "
        "cores, and the tails (p99) grew with it.",
        "",
    ]


def _md_targets(checked: list[dict[str, Any]]) -> list[str]:
    if not checked:
        return []
    rows = [
        [
            t["name"],
            f"{_fmt(t['value'])}{t['unit']}",
            f"{t['op']} {t['limit']:g}{t['unit']}",
            "met" if t["met"] else "**missed**",
            t["why"] or "",
        ]
        for t in checked
    ]
    header = ["target", "measured", "goal", "", "why, and the fix"]
    return ["## Targets", "", *_table(header, rows), ""]


# The features table's cells: (figure, digits).
_FEATURE_CELLS = (
    ("off", 1),
    ("on", 1),
    ("ratio", 3),
    ("cpu_off", 1),
    ("cpu_on", 1),
    ("cpu_ratio", 3),
)


def _md_data(data: dict[str, Any], png: str | None) -> list[str]:
    s = data["settings"]
    rows = []
    for path, fig in data["paths"].items():
        r = data["ratios"].get(path, {})
        proto = PROTOTYPE.get(path)
        rows.append(
            [
                path,
                _fmt(fig["download_MBps"], 1),
                _fmt(r.get("download_MBps", 1.0)),
                _fmt(fig["keepalive_rps"], 0),
                _fmt(r.get("keepalive_rps", 1.0)),
                _fmt(fig["keepalive_p50_ms"]),
                _fmt(fig["keepalive_p99_ms"]),
                _fmt(fig["newconn_per_s"], 0),
                _fmt(r.get("newconn_per_s", 1.0)),
                " / ".join(f"{v:.2f}" for v in proto.values()) if proto else "",
            ]
        )
    at_once = data.get("entries_at_once")
    if at_once:
        direct = data["paths"]["direct"]["keepalive_rps"]
        rows.append(
            [
                f"edge_tunnel, {at_once['entries']} entries at once",
                "-",
                "-",
                _fmt(at_once["keepalive_rps"], 0),
                _fmt(at_once["keepalive_rps"] / direct if direct else None),
                "-",
                _fmt(at_once["keepalive_p99_ms"]),
                "-",
                "-",
                "",
            ]
        )
    header = ["path", "100 MiB MB/s", "ratio", "keep-alive req/s", "ratio", "p50 ms"]
    header += ["p99 ms", "new TLS conn/s", "ratio", "prototype ratios"]
    out = [
        "## 1. Data path",
        "",
        "Four ways to the same nginx HTTPS service: direct; through the edge only (HAProxy "
        "SNI passthrough to nginx); through the edge and the original system's own tunnel "
        "as its README runs it (`edge_tunnel_original`: `ssh -N -T -R`, no session, so sshd "
        "leaves Nagle on, default ciphers; started for each measurement, as the cloud ends a "
        "connection with no channel after 10 s); through the edge and the product's SSH "
        "master connection (`edge_tunnel`: `home manage tunnel_run`, `home/tunnels/ssh.py`'s "
        "`ssh -tt` master with the home's three entries added on its control socket, the "
        "cloud's own sshd); the last once more with the edge's per-connection features off "
        "(`edge_tunnel_bare`, below). The original's and ours share the main site and an "
        "identical mapping: only the tunnel differs. One 100 MiB download "
        f"with curl; wrk on {s['wrk_threads']} thread, {s['wrk_connections']} connections, "
        f"{s['wrk_seconds']:g} s per run for 1 KiB keep-alive requests and for new TLS "
        f"connections (`Connection: close`); medians of {s['repeats']} run(s). The edge's "
        f"per-source rate limit is {s['edge_source_rate']:,} new connections per 10 s here, "
        "as one client stands in for every visitor.",
        "",
        *_table(header, rows),
    ]
    gain = data.get("gain_over_original")
    if gain:
        out += [
            "",
            "What a user of the original gains (`edge_tunnel` / `edge_tunnel_original`, same "
            "run): " + "; ".join(f"{METRICS[k]} **{v:.2f} x**" for k, v in gain.items()) + ".",
        ]
    if at_once:
        out += [
            "",
            f"{at_once['entries']} entries at once: one wrk per hostname "
            f"({', '.join(at_once['hosts'])}, one forward each on the home's one master "
            f"connection), in parallel, {' + '.join(map(str, at_once['connections']))} "
            "connections (the single entry's, split), keep-alive req/s summed; the p99 is "
            f"the worst of the three. {at_once['keepalive_rps']:,.0f} req/s in all "
            f"({' + '.join(f'{r:,.0f}' for r in at_once['keepalive_rps_per_entry'])}), "
            f"**{at_once['ratio_to_one_entry']:.2f} x** one entry's keep-alive req/s of this "
            f"run, {at_once['errors']} errors.",
        ]
    if png:
        out += ["", f"![ratios to direct]({png})"]
    groups = ["haproxy", "sshd", "ssh", "service", "client"]
    cpu = [
        [METRICS[kind], path, *(_fmt(spent.get(g), 1) for g in groups)]
        for kind, per_path in data["cpu_us_per_request"].items()
        if isinstance(per_path, dict)
        for path, spent in per_path.items()
    ]
    mem = data["tunnel_memory_kb"]
    mb = {k: v / 1024 for k, v in mem.items()}
    features = [
        [METRICS[kind], *(_fmt(f[k], d) for k, d in _FEATURE_CELLS)]
        for kind, f in data["features"].items()
    ]
    return [
        *out,
        "",
        "### The per-connection features, on against off",
        "",
        "`edge_tunnel` runs on the main site, with the edge's per-connection features on (the "
        "traffic counters of every route, and an allowlist of five networks on its mapping); "
        "`edge_tunnel_bare` on a second cloud site of the "
        "same run with them off, its own home and tunnel to the same nginx, measured just "
        "before it in every repeat. CPU is of the whole path (every process and the client), "
        "per request (µs; for the download: ms per 100 MiB).",
        "",
        *_table(["test", "off", "on", "on / off", "CPU off", "CPU on", "on / off"], features),
        "",
        "CPU time per request of each process (µs; for the download: ms per 100 MiB). "
        "`client` is the load generator.",
        "",
        *_table(["test", "path", *groups], cpu),
        "",
        f"Tunnel memory: ssh (home side) {mb['ssh_rss']:.1f} MB RSS / {mb['ssh_pss']:.1f} MB "
        f"PSS; sshd (cloud side, {mem['sshd_session_processes']} processes) "
        f"{mb['sshd_session_rss']:.1f} MB RSS / {mb['sshd_session_pss']:.1f} MB PSS.",
        "",
    ]


def _md_control(cp: dict[str, Any]) -> list[str]:
    c, d = cp["create_to_routable"], cp["delete_to_unreachable"]
    r, tn = cp["register_to_tunnel"], cp["tunnel_accepted_after_register"]
    rows = [
        ["API create mapping -> first successful request through the edge", *_in_ms(c)],
        ["API delete mapping -> unreachable", *_in_ms(d)],
        ["keygen + register -> first tunnel accepted", *_in_s(r)],
        ["... of which: ssh spawn -> forward accepted", *_in_s(tn)],
    ]
    return [
        "## 2. Control plane",
        "",
        *_table(["step", "n", "p50", "p99", "max"], rows),
        "",
        f"Failures: {cp['failures']}.",
        "",
    ]


def _in_ms(figure: dict[str, Any]) -> list[str]:
    """n, p50, p99, max of a summary in ms."""
    return [str(figure["n"]), *(f"{figure[k]} ms" for k in ("p50_ms", "p99_ms", "max_ms"))]


def _in_s(figure: dict[str, Any]) -> list[str]:
    """n, median (in the p50 column), no p99, max of a summary in seconds."""
    return [str(figure["n"]), f"{figure['median_s']} s", "", f"{figure['max_s']} s"]


def _md_recovery(rec: dict[str, Any]) -> list[str]:
    k = rec["kill_to_traffic"]
    return [
        "## 3. Recovery",
        "",
        "SIGKILL to the tunnel's ssh (opened by the Home Console) -> first successful request "
        f"through the edge again: median {k['median_s']} s, max {k['max_s']} s over {k['n']} "
        f"kill(s) (samples {k['samples_s']}); the supervisor runs every "
        f"{rec['supervise_every_s']} s.",
        "",
    ]


def _md_scale(sc: dict[str, Any]) -> list[str]:
    lat = sc["latency_new_connection"]
    large, small = lat["large_map"], lat["small_map"]
    rss = sc["haproxy_rss_kb"]
    api = sc["runtime_api_ms"]
    ch = sc["change_to_routable"]
    rows = [
        ["full edge sync from scratch (admin endpoint)", f"{sc['sync_from_scratch_s']} s"],
        ["edge sync with nothing to change", f"{sc['sync_noop_s']} s"],
        [
            "one-mapping change through the API -> routable (p50 / p99)",
            f"{ch['p50_ms']} / {ch['p99_ms']} ms (n={ch['n']})",
        ],
        [
            "HAProxy's own `add map` / `del map` / `show map` at this size",
            f"{api['add_map_ms']} / {api['del_map_ms']} / {api['show_map_ms']} ms",
        ],
        ["HAProxy reloads during the changes", str(sc["reloads"])],
        [
            "HAProxy RSS, empty map -> large map",
            f"{rss['empty'] / 1024:.1f} MB -> {rss['large'] / 1024:.1f} MB",
        ],
        [
            "new TLS connection through the edge, large map (p50 / p99)",
            f"{large['p50_ms']} / {large['p99_ms']} ms",
        ],
        [
            "new TLS connection through the edge, one mapping (p50 / p99)",
            f"{small['p50_ms']} / {small['p99_ms']} ms",
        ],
        ["shrink to one mapping (bulk delete + sync)", f"{sc['shrink_to_one_s']} s"],
    ]
    pv = sc.get("provision")
    if pv:
        rows += [
            [
                f"provision {pv['homes']} homes through the API (system users): claim -> all ready",
                f"{pv['claim_to_all_ready_s']} s",
            ],
            [
                "release them -> every system user gone",
                f"{pv['release_to_all_users_gone_s']} s ({pv['system_users_left']} left)",
            ],
        ]
    return [
        "## 4. Scale",
        "",
        f"{sc['homes']:,} homes (single-account SSH mode: one key line each in one file) "
        f"and {sc['mappings']:,} mappings, inserted in bulk ({sc['bulk_insert_s']} s), on a "
        "cloud site of their own.",
        "",
        *_table(["figure", "value"], rows),
        "",
    ]


def _md_certs(ce: dict[str, Any]) -> list[str]:
    a = ce["add_to_cert_on_disk"]
    return [
        "## 5. Certificates",
        "",
        "Add domain in the Home Console -> certificate on disk, against the local Pebble "
        f"({ce['challenge']} through the edge and a temporary tunnel): median {a['median_s']} "
        f"s, max {a['max_s']} s over {a['n']} domain(s).",
        "",
    ]


def _md_links(li: dict[str, Any]) -> list[str]:
    st = li["storm"]
    per = li["cloud_session_processes"] / li["homes"]
    rows = [
        [
            "connect them all: start -> every forward listening at the cloud",
            f"{li['connect_all_s']} s",
        ],
        [
            "forwards served end to end after it (TLS to nginx at home, sampled)",
            li["served_after_connect"],
        ],
        ["cloud: sshd session processes per home", f"{per:.1f}"],
        [
            "cloud: memory per connected home, PSS (RSS)",
            f"{li['cloud_pss_per_home_mb']} MB ({li['cloud_rss_per_home_mb']} MB)",
        ],
        [
            "home: ssh processes in all / RSS per home",
            f"{li['home_ssh_processes']} / {li['home_ssh_rss_per_home_mb']} MB",
        ],
        ["storm: sshd and its sessions killed -> every forward gone", f"{st['forwards_gone_s']} s"],
        [
            "storm: -> sshd listening again (the site's supervisor)",
            f"{st['sshd_listening_again_s']} s",
        ],
        ["storm: -> every forward listening again", f"{st['all_back_s']} s"],
        ["forwards served end to end after the storm (sampled)", st["served_after"]],
    ]
    return [
        "## 6. Connected homes",
        "",
        f"{li['homes']:,} homes connected at once to a cloud site of their own "
        f"({li['ssh_mode']} SSH mode), each over one SSH connection carrying "
        f"{li['forwards_per_home']} forwards, kept by `home manage links_run` (one master "
        "connection per home, its forwards and the console's backoff), each home from an address of "
        "its own.",
        "",
        *_table(["figure", "value"], rows),
        "",
    ]


# --- scale-out ---------------------------------------------------------------------------


def scale_out_plan(results: dict[str, Any]) -> str:
    data, sc = results["data_path"], results["scale"]
    cpu: Callable[[str, str], float] = lambda kind, group: float(  # noqa: E731
        data["cpu_us_per_request"][kind]["edge_tunnel"].get(group, 0.0)
    )
    mem = data["tunnel_memory_kb"]
    cloud_kb = mem["sshd_session_pss"] or mem["sshd_session_rss"]
    homes_per_gb = int(1024 * 1024 / cloud_kb) if cloud_kb else 0
    ka_us = cpu("keepalive_rps", "haproxy") + cpu("keepalive_rps", "sshd")
    nc_us = cpu("newconn_per_s", "haproxy") + cpu("newconn_per_s", "sshd")
    dl_ms = cpu("download_MBps", "haproxy") + cpu("download_MBps", "sshd")
    ka_core = 1e6 / ka_us if ka_us else 0
    nc_core = 1e6 / nc_us if nc_us else 0
    mb_core = 104.9 / (dl_ms / 1000) if dl_ms else 0
    rss = sc["haproxy_rss_kb"]
    per_map = (rss["large"] - rss["empty"]) * 1024 / max(1, sc["mappings"])
    pv = sc.get("provision", {})
    per_home_s = pv.get("claim_to_all_ready_s", 0) / max(1, pv.get("homes", 1))
    ch = sc["change_to_routable"]
    quick = " (from a `--quick` run: small samples)" if results["run"]["quick"] else ""
    return f"""# Scale-out plan

The plan for more than one edge, written down with the figures of `cloudathome bench`{quick} (see
`performance.md`; this file is regenerated with them). Machine: {results["run"]["machine"]["cores"]}
cores, loopback, load generator on the same cores, so every per-core figure below is a floor.

## What one edge node costs, per unit of work

| resource | measured | so one edge core carries |
| --- | --- | --- |
| keep-alive request through the edge + tunnel | {ka_us:.1f} µs CPU (HAProxy + sshd) | ~{ka_core:,.0f} req/s |
| new TLS connection through the edge + tunnel | {nc_us:.1f} µs CPU (HAProxy + sshd) | ~{nc_core:,.0f} connections/s |
| bulk transfer | {dl_ms:.0f} ms CPU per 100 MiB (HAProxy + sshd) | ~{mb_core:,.0f} MB/s |
| one connected home (sshd session, PSS) | {cloud_kb / 1024:.1f} MB | ~{homes_per_gb:,} homes per GB of RAM |
| one route in HAProxy | ~{per_map:,.0f} bytes | 1M routes in ~{per_map * 1e6 / 2**30:.2f} GB |
| full edge sync of {sc["mappings"]:,} routes | {sc["sync_from_scratch_s"]} s, no reload | |
| one route change at that size, API -> routable | p50 {ch["p50_ms"]} ms, p99 {ch["p99_ms"]} ms | |
| provisioning homes through the API (system user + key file) | {per_home_s * 1000:.0f} ms per home, {pv.get("homes", 0)} claimed at once | ~{3600 / per_home_s if per_home_s else 0:,.0f} homes/hour |

The home side (ssh client) is not the edge's cost, and the map lookup is not either: a new
connection through a map of {sc["mappings"]:,} routes took p50
{sc["latency_new_connection"]["large_map"]["p50_ms"]} ms vs
{sc["latency_new_connection"]["small_map"]["p50_ms"]} ms with one route (the difference is noise;
the prototype behind docs/architecture.md found no measurable cost up to 1M entries).

## What runs out first on one node

1. **CPU in the data path** (sshd decrypts every byte of every home). At the rates above, an
   8-core edge with 6 cores for sshd + HAProxy carries ~{6 * ka_core:,.0f} small requests/s or
   ~{6 * mb_core:,.0f} MB/s in aggregate; most homes are idle, so this is the limit to watch
   (Prometheus: sshd + haproxy CPU per node).
2. **Memory for idle tunnels**: ~{homes_per_gb:,} connected homes per GB; 10,000 homes need
   ~{10000 * cloud_kb / 2**20:.1f} GB. Also one PTY per tunnel (`kernel.pty.max` 4096 by default:
   raise it) and `MaxStartups` for mass reconnects (docs/architecture.md, the data path).
3. **Control plane**: route changes are cheap for HAProxy but our sync diffs the whole desired
   state per change (p50 {ch["p50_ms"]} ms at {sc["mappings"]:,} routes); with many edges this work
   multiplies. The incremental path (one `add map` per change, full diff only from beat) is the
   first thing to build before adding edges.

{_links_projection(results)}## The plan

- **Control plane**: PostgreSQL (`DATABASE_URL`) instead of SQLite; any number of Celery
  workers on the same Redis. The web tier is stateless (token auth); two gunicorn instances
  behind any HTTP balancer.
- **Edge nodes**: each runs HAProxy + our sshd + an edge worker consuming its own queue
  (`edge.<node>`). A home is assigned a node at claim time (its `ssh_host` in the claim reply,
  least loaded by connected homes); its key goes only to that node's sshd (keys travel as task
  arguments, so the node's worker installs them locally).
- **Routing between nodes**: every node's :443 map holds every hostname. For hosts of its own
  homes the value is a local tunnel port (as today); for the others it is the owning node's
  address, through a second backend (`set-dst` to the node's private address, TLS still passed
  through). A client can land on any node (DNS round robin or anycast); the extra hop costs one
  HAProxy pass (edge-only ratio {data["ratios"]["edge"]["keepalive_rps"]:.2f} of direct for
  keep-alive requests here).
- **Sync**: one `edge_sync` task per node from its queue; full syncs stay the reconciler
  ({sc["sync_from_scratch_s"]} s for {sc["mappings"]:,} routes per node), single changes go out
  as one `add map`/`set map`/`del map` broadcast to every node's queue.
- **When to add a node**: when sshd + HAProxy CPU passes ~60% of the node's cores at peak, or
  connected homes pass ~70% of RAM / PTYs by the figures above. Moving a home to another node
  is a key reinstall + its hostnames' map values changing on all nodes; its tunnels reconnect
  (the home's supervisor respawns them within {_recovery(results)}).
"""


PROJECTED_HOMES = 4000


def _links_projection(results: dict[str, Any]) -> str:
    """Connected homes, from the links section's run, projected to PROJECTED_HOMES homes."""
    li = results.get("links")
    if not li:
        return ""
    n, target = li["homes"], PROJECTED_HOMES
    scale = target / n
    st = li["storm"]
    procs = li["cloud_session_processes"] / n
    handshakes = st["all_back_s"] - st["sshd_listening_again_s"]
    machine = results["run"]["machine"]
    pid_max, pty_max = machine.get("pid_max", 0), machine.get("pty_max", 0)
    return f"""## Connected homes: {n:,} measured, {target:,} projected

One SSH connection per home, {li["forwards_per_home"]} forwards each ({li["ssh_mode"]} mode; the
system-users mode adds a passwd lookup per login, not memory). Linear in the number of homes:
PSS per home only falls as more sessions share the same pages, so the memory line is an upper
bound; the storm is CPU-bound handshakes, so it scales with homes per core.

| resource | {n:,} homes (measured) | {target:,} homes (projected) |
| --- | --- | --- |
| cloud memory, sshd sessions (PSS) | {li["cloud_pss_per_home_mb"] * n / 1024:.2f} GB | ~{li["cloud_pss_per_home_mb"] * target / 1024:.1f} GB |
| processes at the cloud | {li["cloud_session_processes"]:,} ({procs:.1f} per home) | ~{procs * target:,.0f} (`kernel.pid_max` here: {pid_max:,}) |
| PTYs at the cloud (one per session) | {n:,} | {target:,} (`kernel.pty.max` here: {pty_max:,}, less 1,024 in a container's own devpts) |
| tunnel ports (`CLOUDATHOME_PORT_BASE` up) | {n * li["forwards_per_home"]:,} | {target * li["forwards_per_home"]:,}, below the ephemeral range (32768) |
| connect every home from nothing | {li["connect_all_s"]} s | ~{li["connect_all_s"] * scale:.0f} s |
| reconnect storm after sshd restarts | {st["all_back_s"]} s | ~{st["sshd_listening_again_s"] + handshakes * scale:.0f} s |

For {target:,} homes on one node: raise `CLOUDATHOME_SSH_MAX_STARTUPS` to at least the homes that
reconnect at once (past its half, sshd drops 30% of new connections, which then back off),
and `kernel.pty.max`. The storm is the figure that argues for a second
node first: past ~{n * 60 / max(st["all_back_s"], 1):,.0f} homes per node, a restart takes longer
than a minute.

"""


def _recovery(results: dict[str, Any]) -> str:
    rec = results.get("recovery")
    return f"~{rec['kill_to_traffic']['median_s']} s (measured)" if rec else "seconds"
