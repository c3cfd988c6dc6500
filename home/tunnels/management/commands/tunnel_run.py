"""`tunnel_run`: forwards of this home in the foreground on a master connection of their own,
exactly as the console runs its link (tunnels/ssh.py's master command line, spawn and
readiness, every forward added in one control command, a refused forward answered once by
connecting again with the takeover), until Ctrl-C or SIGTERM: to publish a port by hand, to
see why the cloud refuses a forward, or to measure the data path without a console. Nothing is
stored; the console's own master and its control socket are not touched."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from home.cloudlink.config import ConfigError
from home.cloudlink.services import link
from home.tunnels import ssh
from home.tunnels.services import READY_TIMEOUT, master_spec

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_ONE = ("--remote-port", "--local-port", "--local-host")
_REFUSED_RETRY_S = 1.0
_FORWARD_FORM = "REMOTE:LOCAL or REMOTE:HOST:LOCAL (HOST in [] for IPv6)"


class Command(BaseCommand):
    help = (
        "Forward 127.0.0.1:<remote port> on the cloud to <local host>:<local port> here, for "
        "--remote-port/--local-port and every --forward, through one SSH master connection of "
        "this home, in the foreground until Ctrl-C or SIGTERM (ssh is stopped then)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--remote-port", type=int, help="a port of this home's range")
        parser.add_argument("--local-port", type=int, help="with --remote-port")
        parser.add_argument("--local-host", help="with --remote-port (default 127.0.0.1)")
        parser.add_argument(
            "--forward",
            action="append",
            default=[],
            metavar="REMOTE:LOCAL",
            help=f"one more forward, {_FORWARD_FORM}; repeatable",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help='once the cloud accepted every forward, print {"pid", "forwards", '
            '"remote_port", "local_port", "ready_s"} on one line (the ports: the first forward)',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            ports = link().ports.range
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        forwards = _forwards(options, ports)
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
        # The control socket in a private folder of this run (short enough for sun_path), so
        # the console's master, and another tunnel_run, keep theirs.
        try:
            with tempfile.TemporaryDirectory(prefix="cah-run-") as folder:
                spec = master_spec(control=Path(folder) / "link")
                try:
                    ssh.master_argv(spec)
                except ValueError as exc:  # the link's fields, or a TMPDIR too long for a socket
                    raise CommandError(str(exc)) from None
                self._run(spec, _checked(spec, forwards), options, stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(
        self,
        spec: ssh.MasterSpec,
        forwards: list[ssh.Forward],
        options: dict[str, Any],
        stop: threading.Event,
    ) -> None:
        log = Path(settings.TUNNEL_LOG_DIR) / f"run-{forwards[0].remote_port}.log"
        started = time.monotonic()
        handle = _connect(spec, log, forwards, takeover=False)
        try:
            if isinstance(handle, str):
                # Refused: an older session of this home may still hold a port (its network
                # died). Once more, asking the cloud to end the home's older sessions first.
                handle = _connect(spec, log, forwards, takeover=True)
                if isinstance(handle, str):
                    raise CommandError(f"the cloud did not accept the forwards: {handle}")
            self._ready(options, handle, forwards, time.monotonic() - started)
            while not stop.wait(0.2):
                if not ssh.is_running(handle):
                    reason = ssh.last_error(log) or "ssh exited"
                    raise CommandError(f"the master connection ended: {reason} (log: {log})")
        finally:
            if not isinstance(handle, str):
                ssh.stop(handle)

    def _ready(
        self,
        options: dict[str, Any],
        handle: ssh.ProcessHandle,
        forwards: list[ssh.Forward],
        took: float,
    ) -> None:
        first = forwards[0]
        if options["json"]:
            line = {
                "pid": handle.pid,
                "forwards": [
                    {"remote_port": f.remote_port, "local_port": f.local_port}
                    | {"local_host": f.local_host}
                    for f in forwards
                ],
                "remote_port": first.remote_port,
                "local_port": first.local_port,
                "ready_s": round(took, 3),
            }
            self.stdout.write(json.dumps(line))
        else:
            routes = ", ".join(
                f"127.0.0.1:{f.remote_port} on the cloud -> {f.local_host}:{f.local_port}"
                for f in forwards
            )
            self.stdout.write(
                f"tunnel up: {routes} (ssh master pid {handle.pid}, accepted in {took:.2f} s); "
                "Ctrl-C stops it"
            )
        self.stdout.flush()


def _connect(
    spec: ssh.MasterSpec, log: Path, forwards: list[ssh.Forward], takeover: bool
) -> ssh.ProcessHandle | str:
    """A master with every forward accepted (its handle), or why the forwards were refused (the
    master stopped then). Any other failure (authentication, host key, the session cap) is a
    CommandError at once: connecting again would not change it."""
    handle = ssh.spawn_master(spec, log, takeover=takeover)
    try:
        error = ssh.master_ready(handle, log, READY_TIMEOUT)
        if error:
            raise CommandError(f"the cloud did not accept the connection: {error} (log: {log})")
        refused = ssh.forward_add(spec, *forwards, timeout=READY_TIMEOUT)
        # After a takeover the evicted sessions may still be closing their listeners: asked
        # again a second later (as links_run does), for as long as a master may take to be ready.
        deadline = time.monotonic() + READY_TIMEOUT
        while refused and takeover and ssh.is_running(handle) and time.monotonic() < deadline:
            time.sleep(_REFUSED_RETRY_S)
            refused = ssh.forward_add(spec, *forwards, timeout=READY_TIMEOUT)
    except BaseException:
        ssh.stop(handle)
        raise
    if refused is None:
        return handle
    ssh.stop(handle)
    return f"{refused} (log: {log})"


def _forwards(options: dict[str, Any], ports: range) -> list[tuple[str, ssh.Forward]]:
    """The forwards asked for, each with the option that gave it: --remote-port/--local-port/
    --local-host first, then each --forward; every remote port one of the home's range, and
    none twice."""
    forwards: list[tuple[str, ssh.Forward]] = []
    remote, local, host = (options[o[2:].replace("-", "_")] for o in _ONE)
    if remote is not None or local is not None or host is not None:
        if remote is None or local is None:
            raise CommandError("--remote-port and --local-port go together (one forward)")
        forwards.append(("--remote-port", ssh.Forward(remote, local, host or "127.0.0.1")))
    forwards += [("--forward", _parse_forward(text)) for text in options["forward"]]
    if not forwards:
        raise CommandError("give --remote-port and --local-port, or --forward (repeatable)")
    seen: set[int] = set()
    for option, forward in forwards:
        if forward.remote_port not in ports:
            raise CommandError(
                f"{option}: {forward.remote_port} is outside this home's range "
                f"{ports[0]}-{ports[-1]}"
            )
        if forward.remote_port in seen:
            raise CommandError(f"{option}: remote port {forward.remote_port} is given twice")
        seen.add(forward.remote_port)
    return forwards


def _checked(spec: ssh.MasterSpec, forwards: list[tuple[str, ssh.Forward]]) -> list[ssh.Forward]:
    """The forwards, once ssh.py's own rules accepted each (a local port, a local host),
    a refusal naming the option that gave it."""
    for option, forward in forwards:
        try:
            ssh.forward_argv(spec, forward)
        except ValueError as exc:
            if option == "--forward":
                raise CommandError(f"--forward: {exc}") from None
            field, _, reason = str(exc).partition(": ")  # the one forward's own options
            raise CommandError(f"--{field.replace('_', '-')}: {reason}") from None
    return [forward for _, forward in forwards]


def _parse_forward(text: str) -> ssh.Forward:
    remote, _, rest = text.partition(":")
    host, _, local = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not (remote.isdigit() and local.isdigit()) or "[" in host or "]" in host:
        raise CommandError(f"--forward: {text!r} is not {_FORWARD_FORM}")
    return ssh.Forward(int(remote), int(local), host or "127.0.0.1")
