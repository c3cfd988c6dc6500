"""Our sshd under floods: silent connections are capped per source and dropped after the login
grace time, a home holds at most its sessions, a connection without any channel is closed, and
ordinary reconnect storms (a home's every tunnel, 50 homes) stay under every limit. Attackers
and homes use distinct loopback source addresses."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud.edge.test_sshd import Edge, Home, edge_site, listening, sleeps_of, takeover
from workers.bench.attack import closed_by_peer, connect_from
from workers.local.procs import running, stop_pid, wait_for

LIMITS = {"source_startups": 4, "login_grace_s": 15, "home_sessions": 3}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with edge_site("single-account", tmp_path_factory.mktemp("sshd-limited"), **LIMITS) as site:
        yield site


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with edge_site("single-account", tmp_path_factory.mktemp("sshd-default")) as site:
        yield site


def banner(sock: socket.socket) -> bool:
    """Whether sshd greets this connection (an SSH-2.0 line) rather than dropping it."""
    sock.settimeout(10)
    try:
        return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


@contextlib.contextmanager
def tunnels(edge: Edge, home: Home, ports: list[int], sources: list[str]) -> Iterator[list]:
    """One tunnel client per port, all started at once, each from its source address."""
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                running(
                    edge.tunnel(home, f"127.0.0.1:{port}", "-o", f"BindAddress={source}"),
                    log=edge.tmp / f"storm-{port}.log",
                )
            )
            for port, source in zip(ports, sources, strict=True)
        ]
        yield procs


# --- before authentication ----------------------------------------------------------------------


def test_silent_connections_from_one_source_are_capped_and_another_source_logs_in(
    limited: Edge,
) -> None:
    socks = []
    try:
        for _ in range(10):
            with contextlib.suppress(OSError):
                socks.append(connect_from("127.0.0.2", limited.cfg.port))
        greeted = sum(banner(sock) for sock in socks)
        assert greeted == LIMITS["source_startups"]
        port = limited.bob.ports[0]
        with tunnels(limited, limited.bob, [port], ["127.0.0.3"]):
            wait_for(lambda: listening(port), timeout=20, what="the other source's tunnel")
    finally:
        for sock in socks:
            sock.close()


def test_a_silent_connection_is_dropped_after_the_login_grace_time(limited: Edge) -> None:
    with connect_from("127.0.0.4", limited.cfg.port) as sock:
        assert banner(sock)
        assert closed_by_peer(sock, LIMITS["login_grace_s"] + 15)


# --- after authentication -----------------------------------------------------------------------


def test_a_home_holds_at_most_its_sessions_and_the_next_one_ends_at_once(limited: Edge) -> None:
    carol = limited.home("carol", ports=4)
    cap = LIMITS["home_sessions"]
    uid = carol.uid
    before = sleeps_of(uid)
    with tunnels(limited, carol, carol.ports[:cap], ["127.0.0.5"] * cap):
        for port in carol.ports[:cap]:
            wait_for(lambda port=port: listening(port), timeout=20, what=f"tunnel {port}")
        wait_for(lambda: len(sleeps_of(uid) - before) == cap, what="every session's command")
        over = subprocess.run(
            limited.tunnel(carol, f"127.0.0.1:{carol.ports[cap]}"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert over.returncode != 0
        assert "already holds every session it may" in over.stdout + over.stderr
        # The refused session takes its forward with it as sshd closes the connection.
        wait_for(lambda: not listening(carol.ports[cap]), timeout=5, what="the refused forward")
        # Other homes (the same account, in this mode) keep their own count.
        port = limited.alice.ports[0]
        with tunnels(limited, limited.alice, [port], ["127.0.0.6"]):
            wait_for(lambda: listening(port), timeout=20, what="another home's tunnel")
    # The slots free up with the sessions.
    with tunnels(limited, carol, carol.ports[cap:], ["127.0.0.5"]):
        wait_for(lambda: listening(carol.ports[cap]), timeout=20, what="the freed slot's tunnel")


def test_a_takeover_of_a_home_at_its_cap_ends_the_older_sessions_and_holds_one_slot(
    limited: Edge,
) -> None:
    erin = limited.home("erin", ports=3)
    cap = LIMITS["home_sessions"]
    with tunnels(limited, erin, erin.ports[:cap], ["127.0.0.7"] * cap) as procs:
        for port in erin.ports[:cap]:
            wait_for(lambda port=port: listening(port), timeout=20, what=f"tunnel {port}")
        with takeover(limited, erin) as new:
            wait_for(lambda: all(p.poll() is not None for p in procs), timeout=10, what="the end")
            assert new.poll() is None
            assert not any(listening(port) for port in erin.ports[:cap])
            # The cap still counts: the takeover holds one slot, the others are free again.
            with tunnels(limited, erin, erin.ports[: cap - 1], ["127.0.0.7"] * (cap - 1)):
                for port in erin.ports[: cap - 1]:
                    wait_for(lambda port=port: listening(port), timeout=20, what=f"{port}")


def test_a_connection_that_holds_no_channel_is_closed(limited: Edge) -> None:
    # `ssh -N` opens no session, so the forced command never counts it.
    log = limited.tmp / "no-session.log"
    with running([*limited.ssh(limited.bob, "-N")], log=log) as proc:
        wait_for(lambda: proc.poll() is not None, timeout=40, what="sshd to close it")


# --- ordinary use stays under the defaults ------------------------------------------------------


def test_a_home_with_all_its_tunnels_reconnecting_at_once_is_let_in(
    default: Edge, tmp_path: Path
) -> None:
    dora = default.home("dora", ports=10)  # PORTS_PER_HOME's default
    with tunnels(default, dora, dora.ports, ["127.0.4.1"] * 10) as procs:
        for port in dora.ports:
            wait_for(lambda port=port: listening(port), timeout=60, what=f"tunnel {port}")
        assert all(proc.poll() is None for proc in procs)


def test_fifty_homes_reconnecting_at_once_are_all_let_in(default: Edge) -> None:
    homes = [default.home(f"storm{i}") for i in range(50)]
    with contextlib.ExitStack() as stack:
        procs = []
        for i, home in enumerate(homes):
            argv = default.tunnel(
                home, f"127.0.0.1:{home.ports[0]}", "-o", f"BindAddress=127.0.5.{i + 1}"
            )
            procs.append(stack.enter_context(running(argv, log=default.tmp / f"fifty-{i}.log")))
        for home in homes:
            port = home.ports[0]
            wait_for(lambda port=port: listening(port), timeout=90, what=f"tunnel {port}")
        assert all(proc.poll() is None for proc in procs)
        for proc in procs:
            stop_pid(proc)
