"""`tunnel_run`: one tunnel of this home in the foreground, exactly as the console runs its
tunnels (tunnels/ssh.py's command line, spawn and readiness), until Ctrl-C or SIGTERM: to
publish a port by hand, to see why the cloud refuses a forward, or to measure the data path
without a console. Nothing is stored; the console's own tunnels are not touched."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from home.cloudlink.config import ConfigError
from home.cloudlink.services import link
from home.tunnels import ssh
from home.tunnels.models import Tunnel
from home.tunnels.services import READY_TIMEOUT, log_path, spec_of

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_OPTIONS = {f: "--" + f.replace("_", "-") for f in ("remote_port", "local_port", "local_host")}


class Command(BaseCommand):
    help = (
        "Forward 127.0.0.1:--remote-port on the cloud to --local-host:--local-port here through "
        "this home's SSH link, in the foreground until Ctrl-C or SIGTERM (ssh is stopped then)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--remote-port", type=int, required=True, help="a port of this home's range"
        )
        parser.add_argument("--local-port", type=int, required=True)
        parser.add_argument("--local-host", default="127.0.0.1")
        parser.add_argument(
            "--json",
            action="store_true",
            help='once the cloud accepted the forward, print {"pid", "remote_port", '
            '"local_port", "ready_s"} on one line',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            ports = link().ports.range
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        remote = options["remote_port"]
        if remote not in ports:
            raise CommandError(
                f"--remote-port: {remote} is outside this home's range {ports[0]}-{ports[-1]}"
            )
        tunnel = Tunnel(
            name="tunnel_run",
            remote_port=remote,
            local_port=options["local_port"],
            local_host=options["local_host"],
        )
        spec, log = spec_of(tunnel), log_path(tunnel)
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
        started = time.monotonic()
        try:
            handle = ssh.spawn(spec, log)
        except ValueError as exc:  # a field ssh.argv refused, named first
            field, _, reason = str(exc).partition(": ")
            option = _OPTIONS.get(field)
            raise CommandError(f"{option}: {reason}" if option else str(exc)) from None
        try:
            error = ssh.wait_ready(spec, handle, log, timeout=READY_TIMEOUT)
            if error:
                raise CommandError(f"the cloud did not accept the tunnel: {error} (log: {log})")
            self._ready(options, handle, time.monotonic() - started)
            while not stop.wait(0.2):
                if not ssh.is_running(handle):
                    reason = ssh.last_error(log) or "ssh exited"
                    raise CommandError(f"the tunnel ended: {reason} (log: {log})")
        finally:
            ssh.stop(handle)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _ready(self, options: dict[str, Any], handle: ssh.ProcessHandle, took: float) -> None:
        remote, local = options["remote_port"], options["local_port"]
        if options["json"]:
            line = {"pid": handle.pid, "remote_port": remote, "local_port": local}
            self.stdout.write(json.dumps({**line, "ready_s": round(took, 3)}))
        else:
            self.stdout.write(
                f"tunnel up: 127.0.0.1:{remote} on the cloud -> {options['local_host']}:{local} "
                f"(ssh pid {handle.pid}, accepted in {took:.2f} s); Ctrl-C stops it"
            )
        self.stdout.flush()
