"""A container engine of the test's own: Debian's podman (runc) with its configuration,
storage, networks and Docker-compatible API socket all in one directory, so it sees nothing
else on the machine and leaves nothing behind, and Debian's docker-compose speaking to it."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.local.procs import running, wait_for

# Facts of these machines: crun fails ("cgroups in hybrid mode not supported") and runc
# works; no process holds CAP_SYS_RESOURCE, so podman must not set its default ulimits;
# there is no systemd to place containers in cgroups (nor to time health checks, below).
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
init_path = "/usr/bin/catatonit"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
tmp_dir = "{root}/libpod"

[network]
network_backend = "netavark"
network_config_dir = "{root}/networks"
"""
STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{root}/run"
"""
# How often health checks run while a container is starting or failing, and once healthy.
PROBE_STARTING, PROBE_HEALTHY = 1.0, 10.0


@dataclass
class Engine:
    root: Path
    env: dict[str, str]
    log: Path
    _probed: dict[str, float] = field(default_factory=dict)

    def podman(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done

    def compose(
        self,
        project: str,
        directory: Path,
        files: Sequence[Path],
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """docker-compose as a user runs it, the settings in its environment."""
        argv = [
            "docker-compose",
            "--ansi",
            "never",
            "-p",
            project,
            "--project-directory",
            str(directory),
        ]
        for path in files:
            argv += ["-f", str(path)]
        started = time.monotonic()
        done = subprocess.run(
            [*argv, *args], env={**self.env, **(env or {})}, capture_output=True, text=True,
            timeout=timeout, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        with open(self.log, "a") as out:
            out.write(
                f"$ {' '.join(argv[6:])} {' '.join(args)}  ({time.monotonic() - started:.1f} s)\n"
            )
            out.write(done.stdout + done.stderr + "\n")
        if check and done.returncode != 0:
            raise RuntimeError(
                f"docker-compose {' '.join(args)} failed ({done.returncode}):\n"
                f"{(done.stdout + done.stderr)[-3000:]}"
            )
        return done

    def inspect(self, *ids: str) -> list[dict[str, Any]]:
        if not ids:
            return []
        return list(json.loads(self.podman("container", "inspect", *ids).stdout))

    def containers(self) -> list[str]:
        return self.podman("ps", "-aq", "--no-trunc").stdout.split()

    def probe_health(self) -> None:
        """Podman 4.3 times health checks with systemd timers, and this machine has no
        systemd: do what the timer would, faster while a container is not yet healthy."""
        running_ids = self.podman("ps", "-q", "--no-trunc", check=False).stdout.split()
        now = time.monotonic()
        for info in self.inspect(*running_ids) if running_ids else []:
            health = (info.get("State") or {}).get("Health") or {}
            if not health or not (info.get("Config") or {}).get("Healthcheck"):
                continue
            period = PROBE_HEALTHY if health.get("Status") == "healthy" else PROBE_STARTING
            if now - self._probed.get(info["Id"], 0.0) >= period:
                self._probed[info["Id"]] = now
                self.podman("healthcheck", "run", info["Id"], check=False, timeout=30)

    def remove_everything(self) -> None:
        """Containers, pods, volumes, networks and images of this engine (all of them made
        by this test: the storage is its own), by ID."""
        ids = self.containers()
        if ids:
            self.podman("rm", "--force", "--time", "5", *ids, check=False)
        volumes = self.podman("volume", "ls", "-q", check=False).stdout.split()
        if volumes:
            self.podman("volume", "rm", "--force", *volumes, check=False)
        networks = [n for n in self.networks() if n != "podman"]
        if networks:
            self.podman("network", "rm", "--force", *networks, check=False)
        images = self.images()
        if images:
            self.podman("rmi", "--force", *images, check=False)

    def networks(self) -> list[str]:
        return self.podman("network", "ls", "-q", check=False).stdout.split()

    def volumes(self) -> list[str]:
        return self.podman("volume", "ls", "-q", check=False).stdout.split()

    def images(self) -> list[str]:
        return self.podman("images", "-aq", "--no-trunc", check=False).stdout.split()


def netavark_chains() -> dict[str, list[str]]:
    """iptables chains netavark made, per table (it keeps its base chains and their jumps
    after the last network is gone)."""
    chains: dict[str, list[str]] = {}
    for table in ("filter", "nat"):
        rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True,
                               check=False).stdout.splitlines()  # fmt: skip
        chains[table] = [r.split()[1] for r in rules if r.startswith("-N NETAVARK")]
    return chains


def remove_netavark_chains(table: str, chains: list[str]) -> None:
    """Undo what netavark left in `table`: the jumps into `chains`, then the chains."""
    rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True,
                           check=False).stdout.splitlines()  # fmt: skip
    for rule in rules:
        words = rule.split()
        if words[:1] == ["-A"] and words[1] not in chains and any(c in words for c in chains):
            subprocess.run(["iptables", "-t", table, "-D", *shlex.split(rule)[1:]], check=False)
    for chain in chains:
        subprocess.run(["iptables", "-t", table, "-F", chain], check=False)
    for chain in chains:
        subprocess.run(["iptables", "-t", table, "-X", chain], check=False)


def leftovers(root: Path) -> None:
    """What podman 4.3 may leave after its last container went: a conmon of an exec session
    (stopped by PID) and its storage's bind mount on itself (unmounted)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if Path(argv[0].decode()).name == "conmon" and str(root).encode() in b" ".join(argv):
                os.kill(int(proc.name), signal.SIGKILL)
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", point], check=False)


@contextlib.contextmanager
def engine(root: Path, logs: Path) -> Iterator[Engine]:
    """podman's API service on a socket in `root`, health checks driven every second; at the
    end every container, volume, network and image is removed and the service stopped.
    Its log and every compose command's output go to `logs`, which is kept."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    conf, storage = root / "containers.conf", root / "storage.conf"
    conf.write_text(CONTAINERS_CONF.format(root=root))
    storage.write_text(STORAGE_CONF.format(root=root))
    sock = root / "podman.sock"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CONTAINER", "DOCKER_"))},
        "CONTAINERS_CONF": str(conf),
        "CONTAINERS_STORAGE_CONF": str(storage),
        "DOCKER_HOST": f"unix://{sock}",
    }
    eng = Engine(root, env, logs / "compose.log")
    service = ["podman", "system", "service", "--time", "0", f"unix://{sock}"]
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(Exception):
                eng.probe_health()

    ticker = threading.Thread(target=tick, name="health-checks", daemon=True)
    chains_before = netavark_chains()
    try:
        with running(service, log=logs / "podman-service.log", env=env, ready=sock.exists):
            wait_for(lambda: eng.podman("version", check=False).returncode == 0, timeout=30)
            ticker.start()
            try:
                yield eng
            finally:
                stop.set()
                ticker.join(60)
                eng.remove_everything()
    finally:
        stop.set()
        leftovers(root)
        for table, chains in netavark_chains().items():
            remove_netavark_chains(table, [c for c in chains if c not in chains_before[table]])
