"""Section 6, links: many homes connected at once to a cloud site of their own, each over one
SSH connection carrying its forwards, kept by `home manage links_run` (home/tunnels/ssh.py's
master connection, forwards and the console's backoff, for many homes from one process). Single-account SSH
mode: one account, one key line per home, which is what a count of connections needs (the
system-users mode differs by one passwd lookup per login).

Measured: the time to connect them all, the cloud's memory per connected home (PSS of every
process of its sshd sessions), the home's ssh RSS per home, and a reconnect storm: every session
of the cloud's sshd killed at once with its listener (the cloud's sshd restarted, as a reboot
or a crash does it) -> every forward listening again. Each home connects from an address of
its own (127.1.x.y), as homes do, so sshd's per-source limits see 1,000 sources."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from workers.bench import tools as bt
from workers.bench.harness import Bench, log, sshd_pids
from workers.bench.scale import seed
from workers.local.procs import free_port, port_open, running, wait_for
from workers.local.sites import CloudSite, cli, home_environ, start_cloud

FORWARDS = 3  # per home, as the homes: three published services
SAMPLES = 5  # forwards probed end to end (TLS to nginx at home) after each connect
SSH_BINARY = "/usr/bin/ssh"


def measure(bench: Bench) -> dict[str, Any]:
    homes = bench.plan.link_homes
    root = bench.root / "links"
    root.mkdir()
    log(f"· links: a cloud site for {homes} homes (single-account), {FORWARDS} forwards each")
    account = bench.stack.enter_context(_service_account(f"{bench.user_prefix}links"))
    base = bench.reserve_ports(homes * FORWARDS)
    settings = {
        "CLOUDATHOME_SSH_MODE": "single-account",
        "CLOUDATHOME_SSH_ACCOUNT": account,
        "CLOUDATHOME_HOME_SLOTS": str(homes),
        "CLOUDATHOME_PORT_STRIDE": str(FORWARDS),
        "CLOUDATHOME_PORTS_PER_HOME": str(FORWARDS),
        "CLOUDATHOME_PORT_BASE": str(base),
    }
    cloud = bench.stack.enter_context(start_cloud(root / "cloud", settings))
    keys = _keys(root / "homes", homes)
    public = root / "homes.pub"
    public.write_text("".join(line + "\n" for _, line in keys))
    seeded = seed(cloud, homes, 0, "--public-key-file", str(public))
    first = int(seeded["first_home"]["port_base"])
    nginx = bench.stack.enter_context(bt.nginx_server(root / "nginx", [free_port()]))
    plan = _plan(cloud, account, root, keys, first, nginx.ports[0])
    wanted = {port for home in plan["homes"] for port, _ in home["forwards"]}

    log(f"· links: connecting {homes} homes ({len(wanted)} forwards)")
    began = time.monotonic()
    swarm = bench.stack.enter_context(_links_run(root, plan))
    connect_s = _until_listening(wanted, began, timeout=120 + homes * 0.3)
    served = _probe(wanted)
    log(f"· links: all {len(wanted)} forwards listen after {connect_s:.1f} s")
    time.sleep(2)  # past the last handshakes: a steady state to weigh
    costs = _costs(cloud, swarm.pid, homes)
    log(
        f"· links: {costs['cloud_pss_per_home_mb']} MB at the cloud, "
        f"{costs['home_ssh_rss_per_home_mb']} MB of ssh at home, per home"
    )

    log("· links: reconnect storm: the cloud's sshd and every session killed at once")
    storm = _storm(cloud, wanted, homes)
    log(f"· links: all {len(wanted)} forwards back after {storm['all_back_s']:.1f} s")
    return {
        "homes": homes,
        "forwards_per_home": FORWARDS,
        "ssh_mode": "single-account",
        "connect_all_s": round(connect_s, 2),
        "served_after_connect": served,
        **costs,
        "storm": {**storm, "served_after": _probe(wanted)},
    }


@contextlib.contextmanager
def _service_account(name: str) -> Iterator[str]:
    """The cloud's one SSH account for this section: a system user, removed afterwards."""
    argv = ["useradd", "--system", "--no-create-home", "--no-log-init", "--home-dir", "/"]
    argv += ["--shell", "/bin/sh", "--password", "*", name]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"useradd {name}: {done.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30, check=False)


def _keys(folder: Path, count: int) -> list[tuple[Path, str]]:
    """(private key file, public key line) of `count` new ed25519 keys, as `home keygen` makes
    them: OpenSSH format, the private half 0600."""
    folder.mkdir(mode=0o700)
    made = []
    for n in range(count):
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        path = folder / f"home{n}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(private)
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        made.append((path, public.decode()))
    return made


def source_address(n: int) -> str:
    """Home n's own address on loopback: 127.1.0.1 .. 127.1.0.250, 127.1.1.1, ..."""
    return f"127.1.{n // 250}.{n % 250 + 1}"


def _plan(
    cloud: CloudSite,
    account: str,
    root: Path,
    keys: list[tuple[Path, str]],
    first: int,
    local_port: int,
) -> dict[str, Any]:
    """What `links_run --homes` reads: the cloud, and each home's key, address and forwards
    (home n holds the n-th slot: the seeded homes take the free slots in order)."""
    host_key = (cloud.state / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{cloud.ssh_port} {' '.join(host_key)}\n")
    known_hosts.chmod(0o600)
    return {
        "host": "127.0.0.1",
        "port": cloud.ssh_port,
        "username": account,
        "known_hosts": str(known_hosts),
        "homes": [
            {
                "private_key": str(key),
                "bind_address": source_address(n),
                "forwards": [[first + n * FORWARDS + j, local_port] for j in range(FORWARDS)],
            }
            for n, (key, _) in enumerate(keys)
        ],
    }


@contextlib.contextmanager
def _links_run(root: Path, plan: dict[str, Any]) -> Iterator[subprocess.Popen[bytes]]:
    plan_file = root / "links.json"
    plan_file.write_text(json.dumps(plan))
    plan_file.chmod(0o600)
    state = root / "home-state"
    env = home_environ(state, root / "no-cloudlink.yaml")
    argv = cli("home", "manage", "links_run", "--homes", str(plan_file))
    with running(argv, log=root / "links-run.log", env=env, ready=lambda: True) as proc:
        yield proc


def _until_listening(wanted: set[int], began: float, timeout: float) -> float:
    wait_for(
        lambda: wanted <= bt.listening_ports(),
        timeout=timeout,
        interval=0.25,  # the kernel's socket table, thousands of lines: read it sparingly
        what=f"all {len(wanted)} forwards listening at the cloud",
    )
    return time.monotonic() - began


def _probe(wanted: set[int]) -> str:
    """SAMPLES forwards picked at random, each a TLS handshake with nginx at home through it."""
    picked = random.sample(sorted(wanted), min(SAMPLES, len(wanted)))
    ok = sum(bt.tls_ok(port, "service.bench.test", timeout=5) for port in picked)
    return f"{ok}/{len(picked)}"


def _costs(cloud: CloudSite, swarm: int, homes: int) -> dict[str, Any]:
    """Per connected home, the CPU its connect took and the memory it holds: the cloud's sshd
    session processes (PSS shares their common pages
    out fairly, RSS counts them in every process) and the home's ssh (RSS: each home is its
    own machine, so nothing is shared between homes there)."""
    listener, sessions = sshd_pids(cloud)
    cloud_kb = [bt.memory_kb(pid) for pid in sessions]
    ssh = [p for p in bt.descendants(swarm) if bt.exe(p) == SSH_BINARY]
    home_kb = [bt.memory_kb(p) for p in ssh]

    def per_home(kb: list[int]) -> float:
        return round(sum(kb) / homes / 1024, 2)

    return {
        # CPU spent connecting them all, per home: what a storm costs the cloud and a home.
        "connect_cpu_ms_per_home": {
            "cloud_sshd": round(bt.cpu_seconds([*listener, *sessions]) * 1000 / homes, 1),
            "home_ssh": round(bt.cpu_seconds(ssh) * 1000 / homes, 1),
        },
        "cloud_session_processes": len(sessions),
        "cloud_pss_per_home_mb": per_home([pss for _, pss in cloud_kb]),
        "cloud_rss_per_home_mb": per_home([rss for rss, _ in cloud_kb]),
        "home_ssh_processes": len(ssh),
        "home_ssh_rss_per_home_mb": per_home([rss for rss, _ in home_kb]),
    }


def _storm(cloud: CloudSite, wanted: set[int], homes: int) -> dict[str, Any]:
    listener, sessions = sshd_pids(cloud)
    began = time.monotonic()
    for pid in [*listener, *sessions]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: not (wanted & bt.listening_ports()) or None,
        timeout=30,
        interval=0.05,
        what="every forward gone with its session",
    )
    gone_s = time.monotonic() - began
    wait_for(
        lambda: port_open(cloud.ssh_port) or None,
        timeout=60,
        interval=0.05,
        what="the cloud's sshd listening again",
    )
    listener_s = time.monotonic() - began
    back_s = _until_listening(wanted, began, timeout=120 + homes * 0.3)
    return {
        "killed_processes": len(listener) + len(sessions),
        "forwards_gone_s": round(gone_s, 2),
        "sshd_listening_again_s": round(listener_s, 2),
        "all_back_s": round(back_s, 2),
    }
