"""The foreground runner behind `cloudathome cloud up` / `home up`: starts each process of
a site in its own session, prints what runs where, restarts one that dies (with backoff;
a process that keeps crashing stops the site), and stops every one of them by PID on
Ctrl-C, so a half-running site never lingers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workers.common.processes import stop_processes

# Requests a site's web server handles at once (the cloud: 2 gunicorn workers x 4 threads,
# HAProxy queues the rest; the console: waitress's threads).
WEB_THREADS = 8
# The Home Console's open connections (waitress refuses more until some close), and the seconds
# after which one that sent or read nothing is closed.
CONSOLE_CONNECTIONS = 200
CONSOLE_IDLE_S = 60


@dataclass
class Service:
    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    ready: Callable[[], bool] | None = None


@dataclass
class Supervisor:
    log_dir: Path
    procs: list[tuple[Service, subprocess.Popen]] = field(default_factory=list)
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def start(self, service: Service, timeout: float = 30.0) -> subprocess.Popen:
        self.log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = self.log_dir / f"{service.name}.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                list(service.argv),
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=service.env,
                start_new_session=True,
            )
        finally:
            os.close(fd)
        self.procs.append((service, proc))
        if service.ready is not None:
            deadline = time.monotonic() + timeout
            while not service.ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{service.name} did not start (log {log}):\n{tail}")
                time.sleep(0.05)
        self.out(f"  {service.name:<8} pid {proc.pid:<7} log {log}")
        return proc

    def wait(self, max_restarts: int = 5, window: float = 60.0) -> int:
        """Block until Ctrl-C/SIGTERM, restarting processes that die; then stop everything."""
        stopping = False

        def request_stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        crashes: dict[str, list[float]] = {}
        code = 0
        while not stopping:
            for i, (service, proc) in enumerate(self.procs):
                if proc.poll() is None:
                    continue
                now = time.monotonic()
                recent = [t for t in crashes.get(service.name, []) if now - t < window] + [now]
                crashes[service.name] = recent
                if len(recent) > max_restarts:
                    self.out(f"{service.name} keeps exiting ({proc.returncode}); stopping the site")
                    code, stopping = 1, True
                    break
                self.out(f"{service.name} exited with {proc.returncode}; restarting")
                time.sleep(min(2 ** (len(recent) - 1) * 0.5, 10))
                del self.procs[i]
                try:
                    self.start(service)
                except RuntimeError as exc:
                    self.out(str(exc))
                    code, stopping = 1, True
                break
            time.sleep(0.2)
        self.stop()
        return code

    def stop(self) -> None:
        """Stop every process with its group, all at once and in bounded time, then reap them."""
        # poll() first: a PID reaped already may belong to someone else by now.
        running = [proc.pid for _, proc in reversed(self.procs) if proc.poll() is None]
        stop_processes(running, timeout=15, group=True)
        for _, proc in self.procs:
            proc.wait()
        self.procs.clear()


def redis_service(state: Path) -> Service:
    """A private Redis on a unix socket (0700) in the state dir, used when REDIS_URL is unset."""
    sock = state / "redis.sock"
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    # No TCP, a private socket, nothing written to disk, no fork.
    options = {
        "--port": "0",
        "--unixsocket": str(sock),
        "--unixsocketperm": "700",
        "--save": "",
        "--appendonly": "no",
        "--dir": str(state),
        "--daemonize": "no",
    }
    argv = [binary, *_flags(options)]
    return Service("redis", argv, ready=sock.exists)


def _flags(options: dict[str, str]) -> list[str]:
    """{"--name": "value"} as argv: ["--name", "value"]."""
    return [part for option in options.items() for part in option]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def unix_socket_open(path: Path) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
    ):
        sock.settimeout(0.5)
        sock.connect(str(path))
        return True
    return False


def web_service(wsgi: str, socket_path: Path, env: dict[str, str]) -> Service:
    """gunicorn serving `wsgi` on a unix socket that only HAProxy reaches: HAProxy holds slow
    clients and hands a thread only a complete request, so gunicorn needs no defence of its own."""
    options = {"--bind": f"unix:{socket_path}", "--workers": "2"}
    options |= {"--threads": str(WEB_THREADS // 2), "--access-logfile": "-"}
    argv = python_module("gunicorn", wsgi, *_flags(options))
    return Service("web", argv, env=env, ready=lambda: unix_socket_open(socket_path))


def console_service(wsgi: str, host: str, port: int, env: dict[str, str]) -> Service:
    """waitress serving `wsgi` on host:port with nothing in front of it (the Home Console):
    it reads every request in its event loop and hands a thread only a complete one, so slow
    clients cost a socket each, never a thread; one idle for CONSOLE_IDLE_S is closed."""
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options = {
        "--listen": listen,
        "--threads": str(WEB_THREADS),
        "--connection-limit": str(CONSOLE_CONNECTIONS),
        "--channel-timeout": str(CONSOLE_IDLE_S),
        "--ident": "cloudathome",
    }
    argv = python_module("waitress", *_flags(options), f"{wsgi}:application")
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    return Service("web", argv, env=env, ready=lambda: port_open(port, probe))


def celery_services(
    site: str, state: Path, flower_bind: str, flower_port: int, env: dict[str, str]
) -> list[Service]:
    """Worker, beat and Flower of a site's Celery app (`<site>.celery`)."""
    app = ["-A", f"{site}.celery"]
    return [
        Service(
            "worker",
            python_module("celery", *app, "worker", "-l", "info", "-c", "2", "-n", f"{site}@%h"),
            env=env,
        ),
        Service(
            "beat",
            python_module("celery", *app, "beat", "-l", "info", "-s", str(state / "beat-schedule")),
            env=env,
        ),
        Service(
            "flower",
            python_module(
                "celery", *app, "flower", f"--address={flower_bind}", f"--port={flower_port}"
            ),
            env=env,
        ),
    ]


def site_main(site: str, argv: list[str], commands: dict[str, Callable[[list[str]], int]]) -> int:
    """`cloudathome <site> <command> ...` for the commands a site has (up, prepare, manage)."""
    # The belt, for every process of a site (its children inherit it): whatever a library
    # creates (SQLite journals, Celery's beat schedule) is the owner's alone. The braces:
    # every file we write also gets its explicit mode (docs/decisions.md, modes table).
    os.umask(0o077)
    usage = f"usage: cloudathome {site} {' | '.join(commands)} [args]"
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage)
        return 0 if argv else 2
    if argv[0] not in commands:
        print(f"cloudathome {site}: unknown command {argv[0]!r}\n{usage}", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


def django_migrate() -> None:
    """`migrate` for a site's `prepare`; an SQLite file it created is made the owner's alone
    (0600) explicitly, not only by the umask: its journal and WAL files copy that mode."""
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    for db in settings.DATABASES.values():
        if db["ENGINE"] == "django.db.backends.sqlite3":
            os.chmod(db["NAME"], 0o600)


def django_manage(site: str, args: list[str]) -> int:
    import django
    from django.core.management import execute_from_command_line

    django.setup()
    execute_from_command_line([f"cloudathome {site} manage", *args])
    return 0


def run_site(
    site: str,
    state: Path,
    redis_url: str,
    services: Callable[[dict[str, str]], Iterable[Service]],
    banner: str,
) -> int:
    """`up` of either site, once its `prepare` ran: a private Redis unless REDIS_URL is given,
    then the site's services in order, then run until Ctrl-C."""
    env = dict(os.environ, CLOUDATHOME_STATE_DIR=str(state), REDIS_URL=redis_url)
    sup = Supervisor(state / "logs")
    try:
        if not os.environ.get("REDIS_URL"):
            sup.start(redis_service(state))
        for service in services(env):
            sup.start(service)
    except Exception as exc:
        sup.stop()
        print(f"cloudathome {site}: {exc}", file=sys.stderr)
        return 1
    print(banner, flush=True)
    return sup.wait()
