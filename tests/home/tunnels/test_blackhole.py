"""A home whose network dies without a FIN or RST comes back while visitors keep coming: the
home's master runs in a network namespace of the test's own (a veth pair to the host, where
the cloud's real sshd listens), its traffic is then dropped with iptables inside the
namespace, and the same home connecting again from the host (the router's new public
address) must serve its hostname's port within 15 s. The namespace's master notices the dead
network by itself (ServerAlive) and exits."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from home.tunnels import ssh
from tests.cloud.edge.test_sshd import Edge, edge_site
from tests.support.net import http_get, serve
from workers.local.procs import free_port, port_open, wait_for

SERVED_WITHIN_S = 15.0
VISIT_EVERY_S = 0.5
VISITS_BOUND_S = 90.0  # the visitor loop ends by then whatever happens


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def namespace() -> Iterator[tuple[str, str, str]]:
    """(name, host address, namespace address): a netns joined to the host by a veth pair."""
    tag = secrets.token_hex(3)
    name, outside, inside = f"cahbh-{tag}", f"cahbh{tag}h", f"cahbh{tag}n"
    octet = 16 + secrets.randbelow(200)
    host, guest = f"10.231.{octet}.1", f"10.231.{octet}.2"
    ip("netns", "add", name)
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        try:
            ip("link", "set", inside, "netns", name)
            ip("addr", "add", f"{host}/30", "dev", outside)
            ip("link", "set", outside, "up")
            ip("-n", name, "addr", "add", f"{guest}/30", "dev", inside)
            ip("-n", name, "link", "set", inside, "up")
            ip("-n", name, "link", "set", "lo", "up")
            yield name, host, guest
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("link", "del", outside)  # takes its peer with it
    finally:
        ip("netns", "del", name)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Edge, str, str]]:
    with namespace() as (name, host, _), edge_site("single-account", tmp_path, listen=host) as edge:
        yield edge, name, host


def spec_for(edge: Edge, host: str, folder: Path, tag: str) -> ssh.MasterSpec:
    known_hosts = folder / f"known_hosts-{tag}"
    line = edge.known_hosts.read_text().split(" ", 1)[1]
    known_hosts.write_text(f"[{host}]:{edge.cfg.port} {line}")
    return ssh.MasterSpec(
        host=host,
        port=edge.cfg.port,
        username=edge.alice.login,
        private_key=edge.alice.key,
        known_hosts=known_hosts,
        control_path=folder / tag / "master.sock",
    )


def test_a_blackholed_home_connecting_again_is_served_within_15_s(
    site: tuple[Edge, str, str], tmp_path: Path
) -> None:
    edge, netns, host = site
    folder = Path(tempfile.mkdtemp(prefix="cahbh-"))  # short: unix socket paths
    local_port = free_port()
    forward = ssh.Forward(remote_port=edge.alice.ports[0], local_port=local_port)
    visits: list[tuple[float, bytes]] = []
    stop = threading.Event()

    def visitor() -> None:
        end = time.monotonic() + VISITS_BOUND_S
        while not stop.is_set() and time.monotonic() < end:
            try:
                visits.append((time.monotonic(), http_get(forward.remote_port, "home.test")[1]))
            except OSError:
                visits.append((time.monotonic(), b""))
            stop.wait(VISIT_EVERY_S)

    procs: list[subprocess.Popen] = []
    thread = threading.Thread(target=visitor, daemon=True)
    try:
        # The home's service inside the namespace answers "before", on the host "after".
        (folder / "www").mkdir()
        (folder / "www" / "index.html").write_text("before")
        procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    "python3",
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                    str(folder / "www"),
                    str(local_port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        old_spec = spec_for(edge, host, folder, "old")
        old_spec.control_path.parent.mkdir(mode=0o700)
        old_log = tmp_path / "old.log"
        with old_log.open("ab") as log:
            old = subprocess.Popen(
                ["ip", "netns", "exec", netns, *ssh.master_argv(old_spec)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        procs.append(old)
        wait_for(lambda: ssh.master_alive(old_spec), timeout=20, what="the namespace's master")
        wait_for(lambda: ssh.forward_add(old_spec, forward) is None, timeout=10, what="its forward")
        thread.start()
        wait_for(lambda: any(b == b"before" for _, b in visits), timeout=10, what="a visit")

        with serve("after", port=local_port):
            for chain in ("OUTPUT", "INPUT"):
                subprocess.run(
                    ["ip", "netns", "exec", netns, "iptables", "-A", chain, "-j", "DROP"],
                    check=True,
                    capture_output=True,
                )
            blackholed = time.monotonic()
            # The same home connects again from its new address, while visitors keep coming.
            new_spec = spec_for(edge, host, folder, "new")
            new = ssh.spawn_master(new_spec, tmp_path / "new.log")
            try:
                # A plain connect: the dead session still holds the port, so the forward is
                # refused; the home connects again asking for the takeover.
                assert ssh.master_ready(new, tmp_path / "new.log") is None
                refused = ssh.forward_add(new_spec, forward)
                assert refused and "forwarding failed" in refused, refused
                ssh.stop(new)
                new = ssh.spawn_master(new_spec, tmp_path / "new.log", takeover=True)
                assert ssh.master_ready(new, tmp_path / "new.log") is None
                wait_for(
                    lambda: ssh.forward_add(new_spec, forward) is None,
                    timeout=SERVED_WITHIN_S,
                    what="the new connection's forward",
                )
                wait_for(
                    lambda: any(t > blackholed and b == b"after" for t, b in visits),
                    timeout=SERVED_WITHIN_S,
                    what="a visit served by the new connection",
                )
                served = next(t for t, b in visits if t > blackholed and b == b"after")
                assert served - blackholed <= SERVED_WITHIN_S
                # The namespace's master notices the dead network by itself and exits.
                wait_for(lambda: old.poll() is not None, timeout=25, what="the old master's end")
                assert ssh.is_running(new) and port_open(forward.remote_port)
            finally:
                ssh.stop(new)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=10)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
