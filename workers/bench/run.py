"""`cloudathome bench`: the data path, control plane, recovery, scale and certificate figures
of both sites on this machine, side by side in one run, written as docs/performance.{md,json,png}
and docs/scale-out.md. Needs root (the cloud gives each home a system user; wrk gets a private
/etc/hosts). Every process it starts is stopped by PID; every load is bounded in count and
time; all traffic stays on 127.0.0.1."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from home.tunnels import ssh
from workers.bench import report as benchreport
from workers.bench import tools as bt
from workers.local.pebble import pebble_server
from workers.local.procs import free_port, wait_for
from workers.local.sites import CloudSite, HomeSite, register_home, start_cloud, start_home

SECTIONS = ("data", "control", "recovery", "scale", "certs")
STATE_BASE = Path("/var/lib/cloudathome-bench")
NAMES = ("direct.bench.test", "edge.bench.test", "tunnel.bench.test", "probe.scale.test")
# Above Linux's ephemeral range (32768-60999), so no outgoing connection can hold a tunnel port.
MAIN_PORT_BASE = 61000
SCALE_PORT_BASE = 20000
HOME_UID_RANGE = (62000, 62999)  # cloud.edge.sshd.SshdConfig's default
HAPROXY, SSHD = "/usr/sbin/haproxy", "/usr/sbin/sshd"


@dataclass(frozen=True)
class Plan:
    """How much of everything one run does; `--quick` is the same run, smaller."""

    quick: bool
    wrk_seconds: float
    repeats: int
    connections: int
    mappings: int
    registrations: int
    recoveries: int
    certificates: int
    scale_homes: int
    scale_mappings_per_home: int
    scale_changes: int
    provision_homes: int
    latency_seconds: float


FULL = Plan(False, 8, 3, 8, 100, 3, 5, 3, 1000, 10, 20, 100, 5)
QUICK = Plan(True, 1, 1, 8, 10, 1, 1, 1, 50, 10, 3, 5, 1)


def log(text: str) -> None:
    print(text, flush=True)


def _ms(seconds: list[float]) -> dict[str, float]:
    return {
        "n": len(seconds),
        "p50_ms": round(bt.percentile(seconds, 50) * 1000, 2),
        "p99_ms": round(bt.percentile(seconds, 99) * 1000, 2),
        "max_ms": round(max(seconds, default=0) * 1000, 2),
    }


def _s(seconds: list[float]) -> dict[str, Any]:
    return {
        "n": len(seconds),
        "median_s": round(bt.median(seconds), 3),
        "max_s": round(max(seconds, default=0), 3),
        "samples_s": [round(x, 3) for x in seconds],
    }


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode()


# --- the cloud's processes, found below `cloudathome cloud up` --------------------------------


def haproxy_pids(cloud: CloudSite) -> list[int]:
    assert cloud.proc is not None
    return [p for p in bt.descendants(cloud.proc.pid) if bt.exe(p) == HAPROXY]


def sshd_pids(cloud: CloudSite) -> tuple[list[int], list[int]]:
    """(listener, session processes) of the cloud's own sshd."""
    assert cloud.proc is not None
    below = bt.descendants(cloud.proc.pid)
    sshd = [p for p in below if bt.exe(p) == SSHD]
    sessions = {c for p in sshd for c in bt.descendants(p)}
    return [p for p in sshd if p not in sessions], sorted(sessions)


def shell(cloud: CloudSite, code: str) -> str:
    done = cloud.manage("shell", "-c", code)
    if done.returncode != 0:
        raise RuntimeError(f"cloud shell failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def remove_home_users(prefix: str) -> list[str]:
    """Safety net: the system users a cloud site of this run created, by their prefix."""
    left = [
        e.pw_name
        for e in pwd.getpwall()
        if e.pw_name.startswith(prefix) and HOME_UID_RANGE[0] <= e.pw_uid <= HOME_UID_RANGE[1]
    ]
    for name in left:
        subprocess.run(["userdel", name], capture_output=True, check=False)
    return left


def users_with(prefix: str, part: str = "") -> list[str]:
    return [e.pw_name for e in pwd.getpwall() if e.pw_name.startswith(prefix) and part in e.pw_name]


# --- the main site: a cloud, one registered home, nginx, the product's tunnel ------------------


@dataclass
class Main:
    cloud: CloudSite
    admin: requests.Session
    prefix: str
    config: Path
    link: dict[str, Any]
    nginx: bt.Nginx
    direct_port: int
    edge_port: int  # nginx listens here itself: the edge-only path
    tunnel_port: int  # the product's ssh -R lands here: the edge + tunnel path
    tunnel: ssh.ProcessHandle
    home_api: requests.Session


class Bench:
    def __init__(self, root: Path, plan: Plan, stack: contextlib.ExitStack) -> None:
        self.root = root
        self.plan = plan
        self.stack = stack
        self.hosts = root / "hosts"
        self.hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in NAMES))
        self._main: Main | None = None
        self.user_prefix = ""
        self.handles: list[ssh.ProcessHandle] = []
        stack.callback(self._stop_tunnels)

    def _stop_tunnels(self) -> None:
        for handle in self.handles:
            ssh.stop(handle)

    def wrk(self, url: str, seconds: float, new_connections: bool = False) -> bt.WrkResult:
        return bt.wrk(url, seconds=seconds, connections=self.plan.connections,
                      hosts_file=self.hosts, script_dir=self.root,
                      new_connections=new_connections)  # fmt: skip

    # --- set-up ---------------------------------------------------------------------------

    def main(self) -> Main:
        if self._main is None:
            self._main = self._start_main()
        return self._main

    def _start_main(self) -> Main:
        prefix = f"b{secrets.token_hex(2)}"
        self.user_prefix = prefix
        self.stack.callback(remove_home_users, prefix)
        log("· starting the cloud site (HAProxy, sshd, web, worker, beat)")
        cloud = self.stack.enter_context(start_cloud(self.root / "cloud", {
            "CLOUDATHOME_SSH_USER_PREFIX": prefix,
            "CLOUDATHOME_PORT_BASE": str(MAIN_PORT_BASE),
            "CLOUDATHOME_PORT_STRIDE": "10",
            "CLOUDATHOME_PORTS_PER_HOME": "10",
            "CLOUDATHOME_HOME_SLOTS": str(self.plan.provision_homes + self.plan.registrations + 4),
        }))  # fmt: skip
        admin = cloud.api(cloud.token("admin", cloud.admin_password))
        password = secrets.token_urlsafe(12)
        cloud.create_user("bench", password)
        log("· registering the bench home (keygen + register, as a user runs them)")
        config, done = register_home(cloud, self.root / "home", "bench", password)
        if done.returncode != 0:
            raise RuntimeError(f"register failed: {done.stderr.strip()[-2000:]}")
        link = _load_link(config)
        base = int(link["ports"]["base"])
        direct_port = free_port()
        edge_port, tunnel_port = base + 9, base + 8  # the console allocates from base upwards
        nginx = self.stack.enter_context(
            bt.nginx_server(self.root / "nginx", [direct_port, edge_port])
        )
        home_api = cloud.api(str(link["auth_token"]))
        self.stack.callback(self._release, cloud, home_api, str(link["home_slug"]), prefix)
        handle = self.spawn_tunnel(link, tunnel_port, direct_port, self.root / "tunnel.log")
        main = Main(cloud, admin, prefix, config, link, nginx, direct_port, edge_port,
                    tunnel_port, handle, home_api)  # fmt: skip
        for host, port in (("edge.bench.test", edge_port), ("tunnel.bench.test", tunnel_port)):
            self.create_mapping(main, host, port)
            if bt.time_until(bt.routable(cloud.https_port, host), 20) is None:
                raise RuntimeError(f"{host} never became routable through the edge")
        return main

    def spawn_tunnel(
        self, link: dict[str, Any], remote_port: int, local_port: int, log_path: Path
    ) -> ssh.ProcessHandle:
        """The product's tunnel, exactly: home/tunnels/ssh.py's argv, spawn and readiness."""
        spec = ssh.TunnelSpec(
            host=link["ssh"]["host"],
            port=int(link["ssh"]["port"]),
            username=link["ssh"]["username"],
            private_key=Path(link["ssh"]["private_key_path"]),
            known_hosts=Path(link["ssh"]["known_hosts"]),
            remote_port=remote_port,
            local_port=local_port,
        )
        handle = ssh.spawn(spec, log_path)
        self.handles.append(handle)
        error = ssh.wait_ready(spec, handle, log_path, timeout=20)
        if error:
            raise RuntimeError(f"tunnel to {remote_port} failed: {error}")
        return handle

    def create_mapping(self, main: Main, host: str, port: int) -> None:
        slug = main.link["home_slug"]
        r = main.home_api.post(f"{main.cloud.url}/api/homes/{slug}/proxy-mappings", timeout=10,
                               json={"host": host, "scheme": "https", "tunnel_port": port})  # fmt: skip
        if r.status_code != 201:
            raise RuntimeError(f"creating mapping {host}: HTTP {r.status_code} {r.text[:300]}")

    def _release(self, cloud: CloudSite, api: requests.Session, slug: str, prefix: str) -> None:
        with contextlib.suppress(requests.RequestException):
            api.delete(f"{cloud.url}/api/homes/{slug}", timeout=10)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not users_with(prefix), timeout=30, what="home users removed")

    # --- 1. data path ---------------------------------------------------------------------

    def data_path(self) -> dict[str, Any]:
        m = self.main()
        https = m.cloud.https_port
        paths = {
            "direct": ("direct.bench.test", m.direct_port),
            "edge": ("edge.bench.test", https),
            "edge_tunnel": ("tunnel.bench.test", https),
        }
        groups: dict[str, Callable[[], list[int]]] = {
            "haproxy": lambda: haproxy_pids(m.cloud),
            "sshd": lambda: sshd_pids(m.cloud)[1],
            "ssh": lambda: [m.tunnel.pid],
            "service": lambda: [m.nginx.pid, *bt.descendants(m.nginx.pid)],
        }
        figures: dict[str, dict[str, list[float]]] = {p: {} for p in paths}
        cpu: dict[str, dict[str, dict[str, float]]] = {}
        counts: dict[str, dict[str, float]] = {}

        def measured(kind: str, path: str, run: Callable[[], tuple[float, int]]) -> float:
            pids = {g: f() for g, f in groups.items()}
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

        for host, port in paths.values():  # warm-up: caches, TLS tickets, page cache
            bt.download(f"https://{host}:{port}/{bt.BIG_FILE}", host, port)
            if not self.plan.quick:
                self.wrk(f"https://{host}:{port}/{bt.SMALL_FILE}", 1)
        for rep in range(self.plan.repeats):
            for path, (host, port) in paths.items():
                log(f"· data path {path} ({rep + 1}/{self.plan.repeats})")

                def dl(h: str = host, p: int = port) -> tuple[float, int]:
                    return bt.download(f"https://{h}:{p}/{bt.BIG_FILE}", h, p), 1

                def ka(h: str = host, p: int = port, path: str = path) -> tuple[float, int]:
                    r = self.wrk(f"https://{h}:{p}/{bt.SMALL_FILE}", self.plan.wrk_seconds)
                    figures[path].setdefault("keepalive_p50_ms", []).append(r.p50_ms)
                    figures[path].setdefault("keepalive_p99_ms", []).append(r.p99_ms)
                    figures[path].setdefault("errors", []).append(r.errors)
                    return r.rps, r.requests

                def nc(h: str = host, p: int = port, path: str = path) -> tuple[float, int]:
                    r = self.wrk(f"https://{h}:{p}/{bt.SMALL_FILE}", self.plan.wrk_seconds, True)
                    figures[path].setdefault("newconn_p99_ms", []).append(r.p99_ms)
                    figures[path].setdefault("errors", []).append(r.errors)
                    return r.rps, r.requests

                for kind, run in (("download_MBps", dl), ("keepalive_rps", ka),
                                  ("newconn_per_s", nc)):  # fmt: skip
                    figures[path].setdefault(kind, []).append(measured(kind, path, run))

        result: dict[str, Any] = {"paths": {}, "ratios": {}, "cpu_us_per_request": {}}
        for path, values in figures.items():
            result["paths"][path] = {
                k: round(bt.median(v), 3) if k != "errors" else int(sum(v))
                for k, v in values.items()
            }
        for path in ("edge", "edge_tunnel"):
            result["ratios"][path] = {
                k: round(result["paths"][path][k] / result["paths"]["direct"][k], 3)
                for k in ("download_MBps", "keepalive_rps", "newconn_per_s")
            }
        units = {"download_MBps": 1e3, "keepalive_rps": 1e6, "newconn_per_s": 1e6}
        for kind, per_path in cpu.items():
            result["cpu_us_per_request"][kind] = {
                path: {g: round(s * units[kind] / max(1, counts[kind][path]), 2)
                       for g, s in spent.items()}
                for path, spent in per_path.items()
            }  # fmt: skip
        result["cpu_us_per_request"]["download_MBps_unit"] = "ms of CPU per 100 MiB download"
        _listener, sessions = sshd_pids(m.cloud)
        ssh_rss, ssh_pss = bt.memory_kb(m.tunnel.pid)
        sess = [bt.memory_kb(p) for p in sessions]
        result["tunnel_memory_kb"] = {
            "ssh_rss": ssh_rss, "ssh_pss": ssh_pss,
            "sshd_session_rss": sum(r for r, _ in sess), "sshd_session_pss": sum(p for _, p in sess),
            "sshd_session_processes": len(sessions),
        }  # fmt: skip
        result["settings"] = {
            "wrk_threads": 1,
            "wrk_connections": self.plan.connections,
            "wrk_seconds": self.plan.wrk_seconds,
            "repeats": self.plan.repeats,
            "download_bytes": 100 * bt.MIB,
        }
        return result

    # --- 2. control plane -----------------------------------------------------------------

    def control_plane(self) -> dict[str, Any]:
        m = self.main()
        https, slug = m.cloud.https_port, m.link["home_slug"]
        created: list[float] = []
        deleted: list[float] = []
        failures = 0
        log(f"· control plane: {self.plan.mappings} mappings created, then deleted")
        for i in range(self.plan.mappings):
            host = f"cp{i}.bench.test"
            started = time.monotonic()
            self.create_mapping(m, host, m.edge_port)
            routed = bt.time_until(bt.routable(https, host), 10)
            if routed is None:
                failures += 1
                continue
            created.append(time.monotonic() - started)
            started = time.monotonic()
            r = m.home_api.delete(f"{m.cloud.url}/api/homes/{slug}/proxy-mappings/{host}",
                                  timeout=10)  # fmt: skip
            if r.status_code != 204:
                raise RuntimeError(f"deleting mapping {host}: HTTP {r.status_code}")
            if bt.time_until(bt.unroutable(https, host), 10) is None:
                failures += 1
                continue
            deleted.append(time.monotonic() - started)
        registrations, tunnel_parts = self._registrations(m)
        return {
            "create_to_routable": _ms(created),
            "delete_to_unreachable": _ms(deleted),
            "failures": failures,
            "register_to_tunnel": _s(registrations),
            "tunnel_accepted_after_register": _s(tunnel_parts),
        }

    def _registrations(self, m: Main) -> tuple[list[float], list[float]]:
        totals: list[float] = []
        tunnels: list[float] = []
        for i in range(self.plan.registrations):
            log(f"· registration -> first tunnel ({i + 1}/{self.plan.registrations})")
            user, password = f"reg{i}", secrets.token_urlsafe(12)
            m.cloud.create_user(user, password)
            started = time.monotonic()
            config, done = register_home(m.cloud, self.root / f"reg{i}", user, password)
            if done.returncode != 0:
                raise RuntimeError(f"register {user} failed: {done.stderr.strip()[-2000:]}")
            registered = time.monotonic()
            link = _load_link(config)
            handle = self.spawn_tunnel(link, int(link["ports"]["base"]), m.direct_port,
                                       self.root / f"reg{i}" / "tunnel.log")  # fmt: skip
            finished = time.monotonic()
            totals.append(finished - started)
            tunnels.append(finished - registered)
            ssh.stop(handle)
            api = m.cloud.api(str(link["auth_token"]))
            api.delete(f"{m.cloud.url}/api/homes/{link['home_slug']}", timeout=10)
            identity = f"_{user}"
            wait_for(lambda: not users_with(m.prefix, identity), timeout=30,  # noqa: B023
                     what=f"{user}'s system user removed")  # fmt: skip
        return totals, tunnels

    # --- 3 and 5. the Home Console: certificates, then tunnel recovery --------------------

    def console(self, want_certs: bool, want_recovery: bool) -> dict[str, Any]:
        m = self.main()
        pebble = self.stack.enter_context(
            pebble_server(self.root / "pebble", m.cloud.http_port, m.cloud.https_port)
        )
        log("· starting the Home Console (web, worker, beat) against the local Pebble")
        password = secrets.token_urlsafe(12)
        home = self.stack.enter_context(start_home(self.root / "home", m.config, password, {
            "CLOUDATHOME_ACME_DIRECTORY": pebble.directory_url,
            "CLOUDATHOME_ACME_CA_BUNDLE": pebble.ca_bundle,
        }))  # fmt: skip
        api = home.api()
        results: dict[str, Any] = {}
        issued: list[float] = []
        domains: list[dict[str, Any]] = []
        count = self.plan.certificates if want_certs else 1
        for i in range(count):
            log(f"· certificate {i + 1}/{count}: add domain -> certificate on disk (Pebble)")
            started = time.monotonic()
            r = api.post(f"{home.url}/api/domains", timeout=10, json={
                "name": f"cert{i}.bench.test", "email": "bench@example.com",
                "cert_dir": str(home.cert_root)})  # fmt: skip
            r.raise_for_status()
            domain_id = r.json()["id"]

            def done(d: int = domain_id) -> dict[str, Any] | None:
                domain = api.get(f"{home.url}/api/domains/{d}", timeout=10).json()
                return domain if domain["job"]["state"] in ("done", "failed") else None

            domain = wait_for(done, timeout=120, interval=0.05, what="the certificate")
            if (
                domain["job"]["state"] != "done"
                or not (Path(domain["cert_path"]) / "fullchain.pem").is_file()
            ):
                raise RuntimeError(f"certificate failed: {domain['job']['error']}")
            issued.append(time.monotonic() - started)
            domains.append(domain)
        if want_certs:
            results["certs"] = {"add_to_cert_on_disk": _s(issued), "challenge": "http-01"}
        if want_recovery:
            results["recovery"] = self._recovery(m, home, api, domains[0])
        return results

    def _recovery(
        self, m: Main, home: HomeSite, api: requests.Session, domain: dict[str, Any]
    ) -> dict[str, Any]:
        host = domain["name"]
        r = api.post(f"{home.url}/api/domains/{domain['id']}/proxy-entries", timeout=30,
                     json={"hostname": host, "home_port": m.direct_port})  # fmt: skip
        r.raise_for_status()
        entry_id = r.json()["id"]
        url = f"{home.url}/api/proxy-entries/{entry_id}"
        api.post(f"{url}/tunnel", json={"open": True}, timeout=10).raise_for_status()
        self.stack.callback(_close_entry, api, url)

        def open_pid() -> int | None:
            tunnel = api.get(url, timeout=10).json()["tunnel"]
            if tunnel["state"] == "open" and tunnel["pid"]:
                pid = int(tunnel["pid"])
                if (start := ssh.start_time_of(pid)) is not None:
                    self.handles.append(ssh.ProcessHandle(pid, start))
                    return pid
            return None

        pid = wait_for(open_pid, timeout=60, interval=0.1, what="the entry's tunnel")
        if bt.time_until(lambda: bt.tls_ok(m.cloud.https_port, host), 20) is None:
            raise RuntimeError(f"{host} is not served through the console's tunnel")
        back: list[float] = []
        for i in range(self.plan.recoveries):
            log(f"· recovery {i + 1}/{self.plan.recoveries}: kill the tunnel's ssh (pid {pid})")
            if bt.comm(pid) != "ssh":
                raise RuntimeError(f"pid {pid} is not the tunnel's ssh any more")
            os.kill(pid, signal.SIGKILL)
            took = bt.time_until(lambda: bt.tls_ok(m.cloud.https_port, host), 60, interval=0.02)
            if took is None:
                raise RuntimeError("traffic did not come back within 60 s after killing ssh")
            back.append(took)
            pid = wait_for(_other_than(open_pid, pid), timeout=30, interval=0.1,
                           what="the respawned tunnel recorded")  # fmt: skip
        settings = home.env.get("CLOUDATHOME_TUNNEL_SUPERVISE_SECONDS", "3 (default)")
        return {"kill_to_traffic": _s(back), "supervise_every_s": settings}

    # --- 4. scale -------------------------------------------------------------------------

    def scale(self) -> dict[str, Any]:
        result = self._scale_edge()
        result["provision"] = self._provision()
        return result

    def _scale_edge(self) -> dict[str, Any]:
        homes, per_home = self.plan.scale_homes, self.plan.scale_mappings_per_home
        total = homes * per_home
        log(f"· scale: a cloud site with {homes} homes (single-account) and {total} mappings")
        cloud = self.stack.enter_context(start_cloud(self.root / "scale", {
            "CLOUDATHOME_SSH_MODE": "single-account",
            "CLOUDATHOME_HOME_SLOTS": str(homes),
            "CLOUDATHOME_PORT_STRIDE": "10",
            "CLOUDATHOME_PORTS_PER_HOME": "10",
            "CLOUDATHOME_PORT_BASE": str(SCALE_PORT_BASE),
            "CLOUDATHOME_SSH_USER_PREFIX": "bs",
        }))  # fmt: skip
        admin = cloud.api(cloud.token("admin", cloud.admin_password))
        probe_port = SCALE_PORT_BASE + per_home - 1 if per_home < 10 else SCALE_PORT_BASE + 9
        self.stack.enter_context(bt.nginx_server(self.root / "scale-nginx", [probe_port]))
        fill = _SCALE_FILL.format(homes=homes, per_home=per_home, key=_public_key(),
                                  probe_port=probe_port)  # fmt: skip
        started = time.monotonic()
        info = json.loads(shell(cloud, fill).strip().splitlines()[-1])
        bulk_s = time.monotonic() - started
        owner = cloud.api(info["token"])
        rss_empty = _rss(haproxy_pids(cloud))
        workers_before = set(haproxy_pids(cloud))

        def sync() -> tuple[float, dict[str, int]]:
            began = time.monotonic()
            r = admin.post(f"{cloud.url}/api/admin/proxy-mappings/sync", timeout=120)
            r.raise_for_status()
            return time.monotonic() - began, r.json()

        sync_s, counts = sync()
        if counts["added"] < total:  # beat's periodic sync got there first: start over
            shell(cloud, _SCALE_CLEAR_ROUTES)
            sync()
            shell(cloud, _SCALE_RESTORE_ROUTES)
            sync_s, counts = sync()
        log(f"· scale: sync from scratch took {sync_s:.3f} s ({counts})")
        noop_s, _ = sync()
        https = cloud.https_port
        if bt.time_until(lambda: bt.tls_ok(https, "probe.scale.test"), 20) is None:
            raise RuntimeError("probe.scale.test is not routable after the sync")
        rss_large = _rss(haproxy_pids(cloud))
        large = self.wrk(f"https://probe.scale.test:{https}/{bt.SMALL_FILE}",
                         self.plan.latency_seconds, new_connections=True)  # fmt: skip
        changes: list[float] = []
        log(f"· scale: {self.plan.scale_changes} one-mapping changes through the API")
        for i in range(self.plan.scale_changes):
            host = f"change{i}.scale.test"
            began = time.monotonic()
            r = owner.post(f"{cloud.url}/api/homes/{info['slug']}/proxy-mappings", timeout=10,
                           json={"host": host, "scheme": "https", "tunnel_port": probe_port})  # fmt: skip
            if r.status_code != 201:
                raise RuntimeError(f"mapping {host}: HTTP {r.status_code} {r.text[:200]}")
            if bt.time_until(bt.routable(https, host), 20) is None:
                raise RuntimeError(f"{host} never became routable")
            changes.append(time.monotonic() - began)
        reloads = len(set(haproxy_pids(cloud)) - workers_before)
        runtime_ms = _runtime_api_ms(cloud)
        began = time.monotonic()
        shell(cloud, _SCALE_SHRINK)
        sync()
        shrink_s = time.monotonic() - began
        if bt.time_until(lambda: bt.tls_ok(https, "probe.scale.test"), 20) is None:
            raise RuntimeError("probe.scale.test lost its route with the small map")
        small = self.wrk(f"https://probe.scale.test:{https}/{bt.SMALL_FILE}",
                         self.plan.latency_seconds, new_connections=True)  # fmt: skip
        return {
            "homes": homes,
            "mappings": counts["added"],
            "bulk_insert_s": round(bulk_s, 3),
            "sync_from_scratch_s": round(sync_s, 3),
            "sync_noop_s": round(noop_s, 3),
            "shrink_to_one_s": round(shrink_s, 3),
            "change_to_routable": _ms(changes),
            "runtime_api_ms": runtime_ms,
            "reloads": reloads,
            "haproxy_rss_kb": {"empty": rss_empty, "large": rss_large},
            "latency_new_connection": {
                "large_map": {
                    "p50_ms": large.p50_ms,
                    "p99_ms": large.p99_ms,
                    "per_s": round(large.rps, 1),
                },
                "small_map": {
                    "p50_ms": small.p50_ms,
                    "p99_ms": small.p99_ms,
                    "per_s": round(small.rps, 1),
                },
            },
        }

    def _provision(self) -> dict[str, Any]:
        m = self.main()
        count = self.plan.provision_homes
        log(f"· scale: provisioning {count} homes (system users) through the API")
        tokens: dict[str, str] = json.loads(
            shell(m.cloud, _PROVISION_USERS.format(count=count)).strip().splitlines()[-1]
        )
        sessions = {user: m.cloud.api(token) for user, token in tokens.items()}
        keys = {user: _public_key() for user in tokens}
        started = time.monotonic()
        slugs: dict[str, str] = {}
        for user, api in sessions.items():
            r = api.post(f"{m.cloud.url}/api/homes", json={"public_key": keys[user]}, timeout=10)
            if r.status_code != 201:
                raise RuntimeError(f"claim for {user}: HTTP {r.status_code} {r.text[:200]}")
            slugs[user] = r.json()["slug"]
        pending = set(slugs)
        deadline = time.monotonic() + (30 + 2 * count)
        while pending and time.monotonic() < deadline:
            for user in sorted(pending):
                r = sessions[user].get(f"{m.cloud.url}/api/homes/{slugs[user]}", timeout=10)
                status = r.json()["status"]
                if status == "failed":
                    raise RuntimeError(f"provisioning {user} failed: {r.json()}")
                if status == "ready":
                    pending.discard(user)
            time.sleep(0.05)
        if pending:
            raise RuntimeError(f"{len(pending)} homes not ready in time")
        ready_s = time.monotonic() - started
        created = len(users_with(m.prefix, "_prov"))
        began = time.monotonic()
        for user, api in sessions.items():
            api.delete(f"{m.cloud.url}/api/homes/{slugs[user]}", timeout=10)
        wait_for(lambda: not users_with(m.prefix, "_prov"), timeout=30 + count,
                 what="the provisioned homes' system users removed")  # fmt: skip
        release_s = time.monotonic() - began
        return {
            "homes": count,
            "system_users_created": created,
            "claim_to_all_ready_s": round(ready_s, 3),
            "release_to_all_users_gone_s": round(release_s, 3),
            "system_users_left": len(users_with(m.prefix, "_prov")),
        }


def _other_than(current: Callable[[], int | None], old: int) -> Callable[[], int | None]:
    def check() -> int | None:
        pid = current()
        return pid if pid != old else None

    return check


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _loadavg() -> list[float]:
    """Other work on the machine skews every figure: the report shows how much there was."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _rss(pids: list[int]) -> int:
    return sum(bt.memory_kb(p)[0] for p in pids)


def _runtime_api_ms(cloud: CloudSite) -> dict[str, float]:
    """HAProxy's own share of a change at this map size: add + del of one key, by hand."""
    from cloud.edge.haproxy import RuntimeAPI

    api = RuntimeAPI(cloud.state / "haproxy" / "admin.sock")
    target = str(cloud.state / "haproxy" / "maps" / "https.map")
    began = time.monotonic()
    api.add_map(target, "runtime-probe.scale.test", str(SCALE_PORT_BASE))
    added = time.monotonic()
    api.del_map(target, "runtime-probe.scale.test")
    deleted = time.monotonic()
    entries = api.map_entries(target)
    shown = time.monotonic()
    return {
        "add_map_ms": round((added - began) * 1000, 3),
        "del_map_ms": round((deleted - added) * 1000, 3),
        "show_map_ms": round((shown - deleted) * 1000, 3),
        "entries": len(entries),
    }


def _close_entry(api: requests.Session, url: str) -> None:
    with contextlib.suppress(requests.RequestException, TimeoutError):
        api.post(f"{url}/tunnel", json={"open": False}, timeout=10)
        wait_for(lambda: api.get(url, timeout=10).json()["tunnel"]["state"] == "closed",
                 timeout=20)  # fmt: skip


def _load_link(config: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(config.read_text())
    if not isinstance(data, dict):
        raise RuntimeError(f"{config}: not a mapping")
    return data


# Shell snippets run inside the cloud site (`cloud manage shell -c`): the bulk set-up is not what
# is measured (section 2 measures the API path), so rows go in with bulk_create.
_SCALE_FILL = """
import json, secrets
from django.conf import settings
from django.contrib.auth import get_user_model
from cloud.accounts.models import ApiToken
from cloud.edge import services as edge, sshd
from cloud.homes.models import Home, ProxyMapping
from workers.common.files import write_atomic
U = get_user_model()
U.objects.bulk_create([U(username=f"scale{{i}}", password="!") for i in range({homes})],
                      batch_size=500)
users = {{u.username: u for u in U.objects.filter(username__startswith="scale")}}
homes = list(Home.objects.order_by("index")[:{homes}])
for h in homes:
    h.owner = users[f"scale{{h.index}}"]
    h.slug = secrets.token_hex(7)
    h.public_key = "{key}"
    h.identity = f"bs{{h.index:02d}}_scale{{h.index}}"
    h.ssh_username = settings.SSH_ACCOUNT
    h.status = "ready"
Home.objects.bulk_update(homes, ["owner", "slug", "public_key", "identity", "ssh_username",
                                 "status"], batch_size=500)
rows = [ProxyMapping(home=h, host=f"h{{h.index}}-{{j}}.scale.test", scheme="https",
                     tunnel_port=h.port_base + j) for h in homes for j in range({per_home})]
rows[0].host = "probe.scale.test"
rows[0].tunnel_port = {probe_port}
ProxyMapping.objects.bulk_create(rows, batch_size=1000)
cfg = edge.sshd_config()
lines = [sshd.key_line(h.public_key, list(h.ports), sshd.TAG_PREFIX + h.identity) for h in homes]
write_atomic(cfg.keys_dir / str(cfg.account), "".join(line + "\\n" for line in lines), 0o644)
_, token = ApiToken.issue(homes[0].owner, "bench")
print(json.dumps({{"token": token, "slug": homes[0].slug}}))
"""
_SCALE_CLEAR_ROUTES = "from cloud.homes.models import Home; Home.objects.update(status='failed')"
_SCALE_RESTORE_ROUTES = "from cloud.homes.models import Home; Home.objects.update(status='ready')"
_SCALE_SHRINK = (
    "from cloud.homes.models import ProxyMapping;"
    "ProxyMapping.objects.exclude(host='probe.scale.test').delete()"
)
_PROVISION_USERS = """
import json
from django.contrib.auth import get_user_model
from cloud.accounts.models import ApiToken
U = get_user_model()
U.objects.bulk_create([U(username=f"prov{{i}}", password="!") for i in range({count})])
print(json.dumps({{u.username: ApiToken.issue(u, "bench")[1]
                  for u in U.objects.filter(username__startswith="prov")}}))
"""


# --- the run ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def version(argv: list[str]) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout + done.stderr).strip().splitlines()[0]

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), "unknown")  # fmt: skip
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": os.uname().release,
        "haproxy": version(["haproxy", "-v"]),
        "openssh": version(["ssh", "-V"]),
        "nginx": version(["nginx", "-v"]),
        "wrk": version(["wrk", "-v"]).split(" Copyright")[0],
        "python": sys.version.split()[0],
        "memory_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
    }


def run(root: Path, plan: Plan, only: str | None) -> dict[str, Any]:
    wanted = [only] if only else list(SECTIONS)
    results: dict[str, Any] = {
        "run": {"quick": plan.quick, "sections": wanted, "plan": asdict(plan),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine()},
    }  # fmt: skip
    results["run"]["loadavg_before"] = _loadavg()
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        bench = Bench(root, plan, stack)
        if "data" in wanted:
            results["data_path"] = bench.data_path()
        if "control" in wanted:
            results["control_plane"] = bench.control_plane()
        if "scale" in wanted:
            results["scale"] = bench.scale()
        if "certs" in wanted or "recovery" in wanted:
            console = bench.console("certs" in wanted, "recovery" in wanted)
            if "recovery" in console:
                results["recovery"] = console["recovery"]
            if "certs" in console:
                results["certificates"] = console["certs"]
        log("· stopping everything")
        results["run"]["home_user_prefix"] = bench.user_prefix
    results["run"]["seconds"] = round(time.monotonic() - began, 1)
    results["run"]["loadavg_after"] = _loadavg()
    results["targets"] = benchreport.targets(results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudathome bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (under a minute)")
    parser.add_argument("--out", type=Path, default=Path("docs"),
                        help="where performance.{md,json,png} and scale-out.md go (default docs/)")  # fmt: skip
    parser.add_argument("--only", choices=SECTIONS, help="run one section only")
    parser.add_argument("--state", type=Path, help="where the sites keep state and logs (default: a new folder under /var/lib/cloudathome-bench)")  # fmt: skip
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("cloudathome bench: run it as root (the cloud gives each home a system user)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.state:
        root = args.state.resolve()
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
    else:
        # Not under /tmp: sshd refuses key files below a world-writable folder.
        STATE_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="run-", dir=STATE_BASE))
        root.chmod(0o755)
    plan = QUICK if args.quick else FULL
    log(f"cloudathome bench: state in {root} ({'quick' if plan.quick else 'full'} run)")
    try:
        results = run(root, plan, args.only)
    except Exception as exc:
        print(f"\ncloudathome bench: failed: {exc}\nlogs are in {root}", file=sys.stderr)
        return 1
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    written = benchreport.write_all(results, out)
    print()
    print(benchreport.table(results))
    log("\nwritten: " + ", ".join(str(p) for p in written))
    return 0
