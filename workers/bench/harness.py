"""What every section of `cloudathome bench` runs on: the plan of one run, the main site (a
cloud, one home registered as a user does it, nginx, the product's tunnel) started once and
shared, the Home Console with a local Pebble, and the way figures are summarised."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests
import yaml

from workers.bench import tools as bt
from workers.common.processes import stop_processes
from workers.local.pebble import MockDns, mock_dns, pebble_server
from workers.local.procs import free_port, running, wait_for
from workers.local.sites import (
    CloudSite,
    HomeSite,
    TunnelRun,
    prove_domain,
    register_home,
    run_tunnel,
    start_cloud,
    start_home,
)

# The main bench home's entries, one forward each on its one master connection, all to the
# same nginx: the first is the data path's edge_tunnel, the three together "entries at once".
ENTRY_HOSTS = ("tunnel.bench.test", "tunnel2.bench.test", "tunnel3.bench.test")
ORIGINAL_HOST = "original.bench.test"  # the peer row: the original system's own tunnel
NAMES = ("direct.bench.test", "edge.bench.test", *ENTRY_HOSTS, ORIGINAL_HOST, "probe.scale.test")
# Above Linux's ephemeral range (32768-60999), so no outgoing connection can hold a tunnel port.
MAIN_PORTS = range(61000, 65536)
# The per-source limit of new connections in 10 s (shipped: 600) on the sites whose load one
# wrk on 127.0.0.1 sends for every visitor; the attack section measures the shipped limits.
DATA_PATH_SOURCE_RATE = 10_000_000
ONE_CLIENT = {"CLOUDATHOME_EDGE_SOURCE_RATE": str(DATA_PATH_SOURCE_RATE)}
# The allowlist of the features-on path: wrk's loopback, nested in and beside other networks as
# a real list would be (the lookup is a longest-prefix match, then one exact match).
FEATURE_ALLOW = ("127.0.0.0/8", "127.0.0.1/32", "10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32")
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
    link_homes: int  # connected at once, each one SSH connection (section links)


FULL = Plan(
    quick=False,
    wrk_seconds=8,
    repeats=3,
    connections=8,
    mappings=100,
    registrations=3,
    recoveries=5,
    certificates=3,
    scale_homes=1000,
    scale_mappings_per_home=10,
    scale_changes=20,
    provision_homes=100,
    latency_seconds=5,
    link_homes=1000,
)
QUICK = replace(
    FULL,
    quick=True,
    wrk_seconds=1,
    repeats=1,
    mappings=10,
    registrations=1,
    recoveries=1,
    certificates=1,
    scale_homes=50,
    scale_changes=3,
    provision_homes=5,
    latency_seconds=1,
    link_homes=20,
)


def log(text: str) -> None:
    print(text, flush=True)


def in_ms(seconds: list[float]) -> dict[str, float]:
    return {
        "n": len(seconds),
        "p50_ms": round(bt.percentile(seconds, 50) * 1000, 2),
        "p99_ms": round(bt.percentile(seconds, 99) * 1000, 2),
        "max_ms": round(max(seconds, default=0) * 1000, 2),
    }


def in_s(seconds: list[float]) -> dict[str, Any]:
    return {
        "n": len(seconds),
        "median_s": round(bt.median(seconds), 3),
        "max_s": round(max(seconds, default=0), 3),
        "samples_s": [round(x, 3) for x in seconds],
    }


# --- the cloud's processes, found below `cloudathome cloud up` --------------------------------


def haproxy_pids(cloud: CloudSite) -> list[int]:
    assert cloud.proc is not None
    return [p for p in bt.descendants(cloud.proc.pid) if bt.exe(p) == HAPROXY]


def sshd_pids(cloud: CloudSite) -> tuple[list[int], list[int]]:
    """(listener, session processes) of the cloud's own sshd."""
    assert cloud.proc is not None
    sshd = {p for p in bt.descendants(cloud.proc.pid) if bt.exe(p) == SSHD}
    # The listener's parent is the supervisor; every process below it is one of its sessions
    # (one walk of /proc per listener: thousands of sessions must not mean thousands of walks).
    listener = sorted(p for p in sshd if bt.parent(p) not in sshd)
    return listener, sorted({c for p in listener for c in bt.descendants(p)})


def free_port_range(size: int, within: range) -> int:
    """The lowest base (a multiple of 100) in `within` of `size` ports nobody listens on:
    another bench or test suite on this machine may hold the others."""
    busy = bt.listening_ports()
    for base in range(within.start, within.stop - size + 1, 100):
        if busy.isdisjoint(range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} free ports in {within.start}-{within.stop - 1}")


def users_with(prefix: str, part: str = "") -> list[str]:
    return [e.pw_name for e in pwd.getpwall() if e.pw_name.startswith(prefix) and part in e.pw_name]


def remove_new_users(prefix: str, before: set[str]) -> list[str]:
    """Safety net: system users of this run's cloud left behind (a crash before the release).
    Only names the run created count: its prefix is random, and no user that existed before
    the run is ever touched."""
    left = [name for name in users_with(prefix) if name not in before]
    for name in left:
        subprocess.run(["userdel", name], capture_output=True, check=False)
    return left


def load_link(config: Path) -> dict[str, Any]:
    data = yaml.safe_load(config.read_text())
    if not isinstance(data, dict):
        raise RuntimeError(f"{config}: not a mapping")
    return data


def _listened(port: int) -> bool:
    return port in bt.listening_ports()


def _port_freed(port: int, timeout: float = 10) -> None:
    if bt.time_until(lambda: not _listened(port), timeout, interval=0.02) is None:
        raise RuntimeError(f"port {port} is still listened on after {timeout:g} s")


def routed(cloud: CloudSite, host: str) -> None:
    if bt.time_until(bt.routable(cloud.https_port, host), 20) is None:
        raise RuntimeError(f"{host} never became routable through the edge")


def check(done: subprocess.CompletedProcess[str], what: str) -> str:
    """The output of a site command that must have succeeded."""
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


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
    tunnel_port: int  # the product's first forward lands here: the edge + tunnel path
    entry_ports: dict[str, int]  # ENTRY_HOSTS -> their tunnel ports, all on `tunnel`
    original_port: int  # the original's `ssh -N -T -R` lands here, while it runs
    tunnel: TunnelRun  # the home's one master connection, every entry's forward on it
    home_api: requests.Session
    dns: MockDns  # the cloud's resolver and Pebble's, where the bench's TXT records live
    home_root: Path  # the bench home's folder (its keys, cloudlink.yaml, the tunnels' logs)


@dataclass
class Bare:
    """A second cloud site with the edge's per-connection features off (traffic counters, the
    allowlist), its own bench home and tunnel to the main site's nginx: the data path without
    the features, measured in the same run as the main site's path with them
    (docs/performance.md)."""

    cloud: CloudSite
    tunnel: TunnelRun


@dataclass
class _Site:
    cloud: CloudSite
    prefix: str  # of the site's system users
    dns: MockDns
    home_root: Path  # the bench home's folder: its keys, cloudlink.yaml, the tunnel's state
    config: Path  # the bench home's cloudlink.yaml
    link: dict[str, Any]
    home_api: requests.Session
    base: int  # the bench home's first tunnel port


@dataclass
class Console:
    home: HomeSite
    api: requests.Session
    domains: list[dict[str, Any]]  # issued so far, with their certificate on disk


class Bench:
    """One run: its state folder, plan and exit stack; the main site and the console are
    started by the first section that needs them and stopped when the run ends."""

    def __init__(self, root: Path, plan: Plan, stack: contextlib.ExitStack) -> None:
        self.root = root
        self.plan = plan
        self.stack = stack
        self.hosts = root / "hosts"
        self.hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in NAMES))
        self._main: Main | None = None
        self._bare: Bare | None = None
        self._ports_from = MAIN_PORTS.start  # every site's tunnel ports lie above the last's
        self._sites = 0
        self._console: Console | None = None
        # Every system user of the run's cloud sites starts with it (each site adds a digit).
        self.user_prefix = f"b{secrets.token_hex(2)}"
        self.strays: list[tuple[int, int]] = []  # (pid, start time) of ssh the console opened
        stack.callback(self._stop_strays)

    def _stop_strays(self) -> None:
        started = dict(self.strays)
        stop_processes(started, timeout=5, is_ours=lambda pid: bt.start_time(pid) == started[pid])

    def wrk(self, url: str, seconds: float, new_connections: bool = False) -> bt.WrkResult:
        return bt.wrk(
            url,
            seconds=seconds,
            connections=self.plan.connections,
            hosts_file=self.hosts,
            script_dir=self.root,
            new_connections=new_connections,
        )

    # --- the main site --------------------------------------------------------------------

    def main(self) -> Main:
        if self._main is None:
            self._main = self._start_main()
        return self._main

    def _start_main(self) -> Main:
        slots = self.plan.provision_homes + self.plan.registrations + 4
        log("· starting the cloud site (HAProxy, sshd, web, worker, beat)")
        site = self._site("cloud", "home", slots, {})
        direct_port = free_port()
        # From the top of the home's range down: the console allocates upwards.
        edge_port, original_port = site.base + 9, site.base + 5
        entry_ports = {host: site.base + 8 - i for i, host in enumerate(ENTRY_HOSTS)}
        nginx = self.stack.enter_context(
            bt.nginx_server(self.root / "nginx", [direct_port, edge_port])
        )
        forwards = [(port, direct_port) for port in entry_ports.values()]
        tunnel = self.stack.enter_context(self.tunnel(site.home_root, site.config, forwards))
        main = Main(
            cloud=site.cloud,
            admin=site.cloud.api(site.cloud.token("admin", site.cloud.admin_password)),
            prefix=site.prefix,
            config=site.config,
            link=site.link,
            nginx=nginx,
            direct_port=direct_port,
            edge_port=edge_port,
            tunnel_port=entry_ports[ENTRY_HOSTS[0]],
            entry_ports=entry_ports,
            original_port=original_port,
            tunnel=tunnel,
            home_api=site.home_api,
            dns=site.dns,
            home_root=site.home_root,
        )
        self.create_mapping(main.cloud, main.home_api, main.link, "edge.bench.test", edge_port)
        # The paths the features are measured on: their mappings have an allowlist (the load
        # generator's loopback among a few other networks), so every connection pays the
        # lookup. The original's too: beside edge_tunnel, only the tunnel differs.
        for host, port in [*entry_ports.items(), (ORIGINAL_HOST, original_port)]:
            self.create_mapping(main.cloud, main.home_api, main.link, host, port, FEATURE_ALLOW)
        for host in ("edge.bench.test", *ENTRY_HOSTS):
            routed(main.cloud, host)
        with self.original_tunnel(main):
            routed(main.cloud, ORIGINAL_HOST)
        return main

    def bare(self) -> Bare:
        if self._bare is None:
            self._bare = self._start_bare()
        return self._bare

    def _start_bare(self) -> Bare:
        m = self.main()
        log("· starting a second cloud site with the per-connection features off")
        site = self._site("bare", "bare-home", 1, {"CLOUDATHOME_EDGE_TRAFFIC_COUNTERS": "0"})
        port = site.base + 8
        tunnel = self.stack.enter_context(
            self.tunnel(site.home_root, site.config, [(port, m.direct_port)])
        )
        self.create_mapping(site.cloud, site.home_api, site.link, "tunnel.bench.test", port)
        routed(site.cloud, "tunnel.bench.test")
        return Bare(cloud=site.cloud, tunnel=tunnel)

    def _site(self, name: str, home: str, slots: int, extra: dict[str, str]) -> _Site:
        """A cloud site in `<root>/<name>` with `slots` homes of 10 ports (above every site
        started before it), and the bench home registered in `<root>/<home>` as a user does
        it, with bench.test proven by its TXT record so the home may map *.bench.test."""
        prefix = f"{self.user_prefix}{self._sites}"
        self._sites += 1
        self.stack.callback(remove_new_users, prefix, set(users_with(prefix)))
        dns = self.stack.enter_context(mock_dns(self.root / f"{name}-dns"))
        base = self.reserve_ports(slots * 10)
        settings = {
            "CLOUDATHOME_DNS_RESOLVERS": dns.resolver,
            "CLOUDATHOME_SSH_USER_PREFIX": prefix,
            "CLOUDATHOME_PORT_BASE": str(base),
            "CLOUDATHOME_PORT_STRIDE": "10",
            "CLOUDATHOME_PORTS_PER_HOME": "10",
            "CLOUDATHOME_HOME_SLOTS": str(slots),
            **ONE_CLIENT,
            **extra,
        }
        cloud = self.stack.enter_context(start_cloud(self.root / name, settings))
        password = secrets.token_urlsafe(12)
        cloud.create_user("bench", password)
        log(f"· registering the bench home of {name} (keygen + register, as a user runs them)")
        home_root = self.root / home
        config, done = register_home(cloud, home_root, "bench", password)
        check(done, "register")
        link = load_link(config)
        home_api = cloud.api(str(link["auth_token"]))
        self.stack.callback(self._release, cloud, home_api, str(link["home_slug"]), prefix)
        log("· proving bench.test with its TXT record, so the bench home may map *.bench.test")
        prove_domain(cloud, home_api, str(link["home_slug"]), dns, "bench.test")
        first_port = int(link["ports"]["base"])
        return _Site(cloud, prefix, dns, home_root, config, link, home_api, first_port)

    def reserve_ports(self, size: int) -> int:
        """The base of `size` free tunnel ports above those of every site started before."""
        base = free_port_range(size, range(self._ports_from, MAIN_PORTS.stop))
        self._ports_from = -(-(base + size) // 100) * 100
        return base

    def tunnel(
        self, home_root: Path, config: Path, forwards: Sequence[tuple[int, int]]
    ) -> contextlib.AbstractContextManager[TunnelRun]:
        """The product's tunnel, exactly: `home manage tunnel_run`, the console's own master
        connection (argv, spawn, readiness) with `forwards` (remote port, local port) added
        in one control command, for the home of `config`."""
        log_path = home_root / f"tunnel-{forwards[0][0]}.out"
        return run_tunnel(home_root / "home-state", config, forwards, log_path)

    @contextlib.contextmanager
    def original_tunnel(self, m: Main) -> Iterator[int]:
        """The original system's tunnel as its README runs it, for the main bench home: `ssh
        -N -T -R` (no session, so sshd never sets TCP_NODELAY: Nagle stays on), default
        ciphers, only what running it unattended needs (its key, batch mode, the home's pinned
        host key, no ssh_config); yields its pid once the cloud listens on its port. The
        cloud's sshd ends a connection with no channel open after 10 s
        (UnusedConnectionTimeout), so it is started for each measurement and stopped after."""
        link, port = m.link["ssh"], m.original_port
        argv = ["ssh", "-N", "-T", "-R", f"127.0.0.1:{port}:127.0.0.1:{m.direct_port}"]
        argv += ["-i", str(link["private_key_path"]), "-o", "BatchMode=yes"]
        argv += [
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={link['known_hosts']}",
        ]
        argv += ["-F", "/dev/null", f"{link['username']}@{link['host']}", "-p", str(link["port"])]
        _port_freed(port)  # the previous run's listener, until its session has ended
        log = m.home_root / "original-tunnel.out"
        env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}  # no agent
        with contextlib.ExitStack() as stack:
            try:
                proc = stack.enter_context(
                    running(argv, log=log, env=env, ready=lambda: _listened(port), timeout=15)
                )
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(
                    f"the original's tunnel (ssh -N -T -R 127.0.0.1:{port}) did not come up: {exc}"
                ) from None
            yield proc.pid

    def create_mapping(
        self,
        cloud: CloudSite,
        home_api: requests.Session,
        link: dict[str, Any],
        host: str,
        port: int,
        allow: Sequence[str] = (),
    ) -> None:
        """The mapping of `host` to the tunnel port `port` (for the `allow` networks only, when
        given), through the API as a user does it."""
        r = home_api.post(
            f"{cloud.url}/api/homes/{link['home_slug']}/proxy-mappings",
            json={"host": host, "scheme": "https", "tunnel_port": port, "allow": list(allow)},
            timeout=10,
        )
        if r.status_code != 201:
            raise RuntimeError(f"creating mapping {host}: HTTP {r.status_code} {r.text[:300]}")

    def _release(self, cloud: CloudSite, api: requests.Session, slug: str, prefix: str) -> None:
        with contextlib.suppress(requests.RequestException):
            api.delete(f"{cloud.url}/api/homes/{slug}", timeout=10)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not users_with(prefix), timeout=30, what="home users removed")

    # --- the Home Console, against a local Pebble -----------------------------------------

    def console(self) -> Console:
        if self._console is None:
            m = self.main()
            pebble = self.stack.enter_context(
                pebble_server(
                    self.root / "pebble", m.cloud.http_port, m.cloud.https_port, dns=m.dns
                )
            )
            log("· starting the Home Console (web, worker, beat) against the local Pebble")
            acme = {
                "CLOUDATHOME_ACME_DIRECTORY": pebble.directory_url,
                "CLOUDATHOME_ACME_CA_BUNDLE": pebble.ca_bundle,
            }
            password = secrets.token_urlsafe(12)
            home = self.stack.enter_context(
                start_home(self.root / "home", m.config, password, acme)
            )
            self._console = Console(home, home.api(), [])
        return self._console
