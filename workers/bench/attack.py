"""`cloudathome bench --only attack`: the floods an internet-facing edge meets, each run for a
bounded time against its own site while a victim is probed from another loopback address,
and the clients that make them (the tests trip each limit with the same ones)."""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from workers.bench import tools as bt
from workers.bench.harness import (
    Bench,
    log,
    remove_new_users,
    users_with,
)
from workers.local.procs import wait_for
from workers.local.sites import CloudSite, start_cloud

PROBE_TIMEOUT = 5.0  # seconds one probe may take before it counts as not served

# --- flood clients ------------------------------------------------------------------------------


def connect_from(source: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` from the loopback address `source` (127.x.y.z:
    Linux routes all of 127/8 to lo, so each one is a distinct client address for the edge)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def client_hello(sni: str) -> bytes:
    """The bytes of a real TLS ClientHello naming `sni` (what a browser sends first)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _readable(sock: socket.socket, timeout: float) -> bool:
    # poll, not select: a flood holds more descriptors than select's 1024.
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def answered(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer sent a byte within `timeout`; False when it closed or reset instead."""
    if not _readable(sock, timeout):
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def hello(port: int, sni: str, source: str, timeout: float = 10.0) -> socket.socket | None:
    """Connect from `source`, send a ClientHello for `sni` and send nothing more: the socket
    once the home's service answered (the caller holds or closes it), None when the edge
    refused the connection (closed or reset it)."""
    try:
        sock = connect_from(source, port, timeout)
    except OSError:
        return None
    try:
        sock.sendall(client_hello(sni))
        if answered(sock, timeout):
            return sock
    except OSError:
        pass
    sock.close()
    return None


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer ends the connection within `timeout` (0: already ended), whatever it
    sent before."""
    deadline = time.monotonic() + timeout
    while True:
        if not _readable(sock, max(0.0, deadline - time.monotonic())):
            return False
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True


# --- probes -------------------------------------------------------------------------------------


@dataclass
class Probe:
    """What the unattacked side saw while a flood ran: one entry per probe, in seconds."""

    what: str
    ok: list[float] = field(default_factory=list)
    failed: int = 0

    def summary(self) -> dict[str, Any]:
        total = len(self.ok) + self.failed
        return {
            "probe": self.what,
            "n": total,
            "served_share": round(len(self.ok) / total, 4) if total else 0.0,
            "p50_ms": round(bt.percentile(self.ok, 50) * 1000, 1),
            "p99_ms": round(bt.percentile(self.ok, 99) * 1000, 1),
            "max_ms": round(max(self.ok, default=0) * 1000, 1),
        }


def probing(what: str, check: Callable[[], bool], until: float, interval: float) -> Probe:
    """Run `check` every `interval` until the monotonic time `until` (each bounded by its own
    timeout); a check that raises or answers False counts as not served."""
    probe = Probe(what)
    while time.monotonic() < until:
        began = time.monotonic()
        try:
            ok = check()
        except (OSError, requests.RequestException, subprocess.SubprocessError):
            ok = False
        if ok:
            probe.ok.append(time.monotonic() - began)
        else:
            probe.failed += 1
        time.sleep(max(0.0, interval - (time.monotonic() - began)))
    return probe


def tls_probe(port: int, sni: str, source: str) -> Callable[[], bool]:
    def check() -> bool:
        with contextlib.closing(connect_from(source, port, timeout=PROBE_TIMEOUT)) as raw:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                tls.sendall(
                    f"GET /1k HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode()
                )
                return tls.recv(64).startswith(b"HTTP/1.1 200")

    return check


def http_probe(session: requests.Session, url: str) -> Callable[[], bool]:
    return lambda: session.get(url, timeout=PROBE_TIMEOUT).status_code == 200


def ssh_login(argv: list[str], timeout: float = PROBE_TIMEOUT * 2) -> bool:
    """One SSH login of a home: authenticated when the forced command ran and refused the
    PTY-less session (exit 1); 255 is ssh's own failure."""
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
    )
    return done.returncode == 1


# --- floods -------------------------------------------------------------------------------------


@dataclass
class Counts:
    opened: int = 0
    refused: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def asdict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"opened": self.opened, "refused": self.refused}
        if self.statuses:
            out["statuses"] = dict(sorted(self.statuses.items()))
        return out


def hold_hellos(port: int, sni: str, sources: list[str], until: float, counts: Counts) -> None:
    """One ClientHello-then-nothing connection per entry of `sources`, opened by 8 threads and
    held until `until`."""
    held: list[socket.socket] = []
    lock = threading.Lock()

    def open_(source: str) -> None:
        # Bounded by count (and a hard stop well past the window), not by the window: what the
        # flood reaches must not depend on how loaded the machine is.
        if time.monotonic() >= until + 60:
            return
        sock = hello(port, sni, source, timeout=2.0)
        with lock:
            if sock is None:
                counts.refused += 1
            else:
                counts.opened += 1
                held.append(sock)

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(open_, sources))
        time.sleep(max(0.0, until - time.monotonic()))
    finally:
        for sock in held:
            sock.close()


def hold_silent(port: int, sources: list[str], until: float, counts: Counts) -> None:
    """Connections that never say a word (sshd's pre-authentication slots), kept open: a
    closed one is opened again, until `until`."""
    pool: list[tuple[str, socket.socket]] = []
    try:
        for source in sources:
            with contextlib.suppress(OSError):
                pool.append((source, connect_from(source, port, timeout=2.0)))
                counts.opened += 1
        while time.monotonic() < until:
            time.sleep(0.5)
            for i, (source, sock) in enumerate(pool):
                if closed_by_peer(sock, 0):
                    sock.close()
                    counts.refused += 1
                    with contextlib.suppress(OSError):
                        pool[i] = (source, connect_from(source, port, timeout=2.0))
                        counts.opened += 1
    finally:
        for _, sock in pool:
            sock.close()


SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
SLOW_BODY = (
    b"POST /api/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


@contextlib.contextmanager
def slow_requests(source: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` sockets from `source`, half with a request head that never ends, half with a
    body that never comes; all closed on exit."""
    socks: list[socket.socket] = []
    try:
        for i in range(count):
            sock = connect_from(source, port)
            sock.sendall(SLOW_BODY if i % 2 else SLOW_HEAD)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def slowloris(port: int, sources: list[str], until: float, counts: Counts) -> None:
    """Slowloris: every socket sends a request head that never ends, a byte now and then, and
    a socket the server closed is opened again, until `until`."""
    pool: list[tuple[str, socket.socket | None]] = [(source, None) for source in sources]
    try:
        while time.monotonic() < until:
            for i, (source, sock) in enumerate(pool):
                if sock is not None and not closed_by_peer(sock, 0):
                    with contextlib.suppress(OSError):
                        sock.sendall(b"a")
                    continue
                if sock is not None:
                    sock.close()
                    counts.refused += 1
                try:
                    fresh = connect_from(source, port, timeout=2.0)
                    fresh.sendall(SLOW_HEAD)
                    pool[i] = (source, fresh)
                    counts.opened += 1
                except OSError:
                    pool[i] = (source, None)
                    counts.refused += 1
            time.sleep(0.5)
    finally:
        for _, sock in pool:
            if sock is not None:
                sock.close()


def guess_passwords(
    url: str, sources: list[str], usernames: list[str], until: float, counts: Counts
) -> None:
    """Password guessing against the token endpoint, one thread per source address."""
    lock = threading.Lock()

    def guesser(source: str) -> None:
        session = from_address(source)
        n = 0
        while time.monotonic() < until:
            username = usernames[n % len(usernames)]
            n += 1
            try:
                answer = str(
                    session.post(
                        url,
                        json={"username": username, "password": f"guess{n}"},
                        timeout=PROBE_TIMEOUT,
                    ).status_code
                )
            except requests.RequestException as exc:
                answer = type(exc).__name__
            with lock:
                counts.statuses[answer] = counts.statuses.get(answer, 0) + 1

    with ThreadPoolExecutor(len(sources)) as pool:
        list(pool.map(guesser, sources))


class _FromAddress(HTTPAdapter):
    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def from_address(source: str) -> requests.Session:
    """An HTTP client at the loopback address `source`."""
    session = requests.Session()
    session.mount("http://", _FromAddress(source))
    return session


# --- the section --------------------------------------------------------------------------------

TARGET_SHARE = 0.95
TARGET_P99_MS = 1000.0


@dataclass(frozen=True)
class Sizes:
    window_s: float
    one_source: int  # held ClientHellos from one address
    sources: int  # addresses aimed at one home
    per_source: int
    ssh_silent: int
    slow_sockets: int
    guessers: int
    storm: int  # SSH logins of one home at once, each from its own address


FULL = Sizes(15, 1000, 50, 60, 400, 500, 8, 100)
QUICK = Sizes(6, 400, 20, 110, 100, 100, 4, 20)


@dataclass
class HomeOf:
    name: str
    token: str
    slug: str
    ssh_username: str
    port_base: int
    key: Path


def _home(cloud: CloudSite, root: Path, name: str) -> HomeOf:
    password = secrets.token_urlsafe(12)
    cloud.create_user(name, password)
    token = cloud.token(name, password)
    api = cloud.api(token)
    key = root / "keys" / name
    key.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    public = key.with_name(key.name + ".pub").read_text().strip()
    r = api.post(f"{cloud.url}/api/homes", json={"public_key": public}, timeout=20)
    if r.status_code != 201:
        raise RuntimeError(f"registering {name}: HTTP {r.status_code} {r.text[:300]}")
    slug = r.json()["slug"]
    home = wait_for(
        lambda: (
            (h := api.get(f"{cloud.url}/api/homes/{slug}", timeout=10).json())["status"] == "ready"
            and h
        ),
        timeout=60,
        what=f"{name}'s home",
    )
    return HomeOf(name, token, slug, home["ssh_username"], int(home["port_base"]), key)


def _map(cloud: CloudSite, home: HomeOf, host: str) -> None:
    r = cloud.api(home.token).post(
        f"{cloud.url}/api/homes/{home.slug}/proxy-mappings",
        timeout=20,
        json={"host": host, "scheme": "https", "tunnel_port": home.port_base},
    )
    if r.status_code != 201:
        raise RuntimeError(f"mapping {host}: HTTP {r.status_code} {r.text[:300]}")
    if bt.time_until(bt.routable(cloud.https_port, host), 20) is None:
        raise RuntimeError(f"{host} never became routable")


def _release(cloud: CloudSite, homes: list[HomeOf]) -> None:
    for home in homes:
        with contextlib.suppress(requests.RequestException):
            cloud.api(home.token).delete(f"{cloud.url}/api/homes/{home.slug}", timeout=10)


def _ssh_argv(cloud: CloudSite, home: HomeOf, source: str) -> list[str]:
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"BindAddress={source}",
        "-o",
        f"ConnectTimeout={int(PROBE_TIMEOUT)}",
        "-i",
        str(home.key),
        "-p",
        str(cloud.ssh_port),
        f"{home.ssh_username}@127.0.0.1",
    ]


def _under(
    flood: Callable[[float, Counts], None], probe: Callable[[float], Probe], window: float
) -> dict[str, Any]:
    """Run `flood` for `window` seconds in a thread and probe the victim meanwhile."""
    counts = Counts()
    until = time.monotonic() + window
    thread = threading.Thread(target=flood, args=(until, counts), daemon=True)
    thread.start()
    time.sleep(min(1.0, window / 4))  # the flood builds up first
    seen = probe(until)
    thread.join(window + 60)
    return {"attack": counts.asdict(), **seen.summary()}


def measure(bench: Bench) -> dict[str, Any]:
    """The "under attack" section: each flood for a bounded time against a cloud site of its
    own while an unattacked home, the SSH endpoint or the control plane is probed from another
    address. Needs root (the homes are system users)."""
    root, quick, stack = bench.root, bench.plan.quick, bench.stack
    size = QUICK if quick else FULL
    prefix = f"a{secrets.token_hex(2)}"
    stack.callback(remove_new_users, prefix, set(users_with(prefix)))
    log("· attack: a cloud site of its own, an attacked home and a victim home")
    settings = {
        # Each home owns <its name>.attack.test: attacked.attack.test, victim.attack.test.
        "CLOUDATHOME_BASE_DOMAIN": "attack.test",
        "CLOUDATHOME_SSH_USER_PREFIX": prefix,
        "CLOUDATHOME_PORT_BASE": str(bench.reserve_ports(30)),
        "CLOUDATHOME_PORT_STRIDE": "10",
        "CLOUDATHOME_PORTS_PER_HOME": "10",
        "CLOUDATHOME_HOME_SLOTS": "3",
    }
    cloud = stack.enter_context(start_cloud(root / "attack", settings))
    attacked, victim = _home(cloud, root, "attacked"), _home(cloud, root, "victim")
    stack.callback(_release, cloud, [attacked, victim])
    stack.enter_context(
        bt.nginx_server(root / "attack-nginx", [attacked.port_base, victim.port_base])
    )
    _map(cloud, attacked, "attacked.attack.test")
    _map(cloud, victim, "victim.attack.test")
    https, window = cloud.https_port, size.window_s
    victim_tls = tls_probe(https, "victim.attack.test", "127.0.0.3")

    def edge_probe(until: float) -> Probe:
        return probing("TLS GET of the victim home through the edge", victim_tls, until, 0.05)

    def ssh_probe(until: float) -> Probe:
        argv = _ssh_argv(cloud, victim, "127.0.0.3")
        return probing("SSH login of the victim home", lambda: ssh_login(argv), until, 0.2)

    def web_probe(until: float) -> Probe:
        session = from_address("127.0.0.5")
        session.headers["Authorization"] = f"Bearer {victim.token}"
        check = http_probe(session, f"{cloud.url}/api/homes")
        return probing("GET /api/homes of the victim on the control plane", check, until, 0.05)

    log("· attack: baselines, the same probes with no flood")
    baseline = {
        "edge": edge_probe(time.monotonic() + window / 2).summary(),
        "ssh": ssh_probe(time.monotonic() + window / 2).summary(),
        "web": web_probe(time.monotonic() + window / 2).summary(),
    }
    floods: dict[str, dict[str, Any]] = {}
    log(f"· attack: edge, {size.one_source} held ClientHellos from one address")
    floods["edge_one_source"] = _under(
        lambda until, c: hold_hellos(
            https, "attacked.attack.test", ["127.0.0.2"] * size.one_source, until, c
        ),
        edge_probe,
        window,
    )
    many = [f"127.0.1.{i + 1}" for i in range(size.sources) for _ in range(size.per_source)]
    log(f"· attack: edge, {len(many)} held ClientHellos from {size.sources} addresses at one home")
    floods["edge_many_sources"] = _under(
        lambda until, c: hold_hellos(https, "attacked.attack.test", many, until, c),
        edge_probe,
        window,
    )
    log(f"· attack: SSH, {size.ssh_silent} silent connections from one address")
    floods["ssh_preauth"] = _under(
        lambda until, c: hold_silent(cloud.ssh_port, ["127.0.0.2"] * size.ssh_silent, until, c),
        ssh_probe,
        window,
    )
    slow = [f"127.0.2.{i % 50 + 1}" for i in range(size.slow_sockets)]
    log(f"· attack: control plane, slowloris with {len(slow)} sockets from 50 addresses")
    floods["web_slowloris"] = _under(
        lambda until, c: slowloris(cloud.web_port, slow, until, c), web_probe, window
    )
    guessers = [f"127.0.3.{i + 1}" for i in range(size.guessers)]
    log(f"· attack: accounts, password guessing from {len(guessers)} addresses")
    floods["password_guessing"] = _under(
        lambda until, c: guess_passwords(
            f"{cloud.url}/api/auth/token",
            guessers,
            ["victim", "attacked", "admin", "nobody"],
            until,
            c,
        ),
        web_probe,
        window,
    )
    log(f"· attack: {size.storm} SSH logins of one home at once, each from its own address")
    storm = Probe(f"{size.storm} SSH logins at once")
    with ThreadPoolExecutor(size.storm) as pool:

        def login(i: int) -> tuple[bool, float]:
            began = time.monotonic()
            try:
                # As long as sshd's LoginGraceTime and more: the storm is sshd's to drop.
                ok = ssh_login(_ssh_argv(cloud, victim, f"127.0.4.{i + 1}"), timeout=60)
            except subprocess.SubprocessError:
                ok = False
            return ok, time.monotonic() - began

        for ok, took in pool.map(login, range(size.storm)):
            if ok:
                storm.ok.append(took)
            else:
                storm.failed += 1
    result: dict[str, Any] = {
        "window_s": window,
        "baseline": baseline,
        "floods": floods,
        "ssh_storm": storm.summary(),
    }
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for each flood: >= 0.95 of the probes served, p99 below 1 s."""
    checked = []
    for name, figures in result["floods"].items():
        for figure, op, limit, unit in (
            ("served_share", ">=", TARGET_SHARE, ""),
            ("p99_ms", "<=", TARGET_P99_MS, "ms"),
        ):
            value = figures[figure]
            met = value >= limit if op == ">=" else value <= limit
            checked.append(
                {
                    "name": f"under attack, {name}: {figure}",
                    "value": value,
                    "op": op,
                    "limit": limit,
                    "unit": unit,
                    "met": met,
                    "why": "" if met else figures["probe"],
                }
            )
    return checked


def table(result: dict[str, Any]) -> str:
    lines = [f"{'under attack':<20} {'served':>7} {'p50 ms':>8} {'p99 ms':>8}  attack"]
    rows = {
        **{f"baseline_{k}": v for k, v in result["baseline"].items()},
        **result["floods"],
        "ssh_storm": result["ssh_storm"],
    }
    for name, fig in rows.items():
        lines.append(
            f"{name:<20} {fig['served_share']:>7.3f} {fig['p50_ms']:>8.1f} "
            f"{fig['p99_ms']:>8.1f}  {fig.get('attack', '')}"
        )
    return "\n".join(lines)
