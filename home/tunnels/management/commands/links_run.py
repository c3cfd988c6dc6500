"""`links_run`: the SSH links of many homes from one process, each one master connection of
tunnels/ssh.py (its command line, its forwards added through the control socket once the
master is up, a refused forward answered by connecting again with the takeover, a master that
ended connected again after the console's backoff with jitter), until Ctrl-C or SIGTERM. A
load generator for a cloud's SSH endpoint (the benchmark's connected homes): nothing is stored, and this home's own link and tunnels are not
touched. Events go to stdout, one JSON object per line."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from home.tunnels import ssh

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_TICK_S = 0.1
_ASKING_AT_ONCE = 64  # `ssh -O forward` processes in flight, all homes together
_MAX_HOMES = 10_000
_REFUSED_RETRY_S = 1.0


@dataclass
class _Home:
    n: int
    spec: ssh.MasterSpec
    forwards: list[ssh.Forward]
    master: subprocess.Popen[bytes] | None = None
    failures: int = 0
    retry_at: float = 0.0
    pending: list[ssh.Forward] = field(default_factory=list)  # still to add on this master
    ask_at: float = 0.0  # not before: a refused forward is asked again a second later
    added: int = 0  # forwards the cloud accepted on this master
    connected: bool = False  # this master's control socket is up
    refused: bool = False  # the cloud refused a forward of this master: ask one at a time
    takeover: bool = False  # the next master asks the cloud to end this home's older sessions
    retake: bool = False  # this master is being ended to connect again with the takeover


def _plan(path: Path, sockets: Path) -> list[_Home]:
    """The homes of `path` (JSON: host, port, username, known_hosts, and homes: a list of
    {private_key, bind_address, forwards: [[remote_port, local_port], ...]}), every field
    checked by the argv builders before anything runs."""
    try:
        data = json.loads(path.read_text())
        common = {k: data[k] for k in ("host", "port", "username")}
        homes = data["homes"]
        if not isinstance(homes, list) or not 0 < len(homes) <= _MAX_HOMES:
            raise ValueError(f"homes: must be a list of 1 to {_MAX_HOMES}")
        plan = []
        for n, home in enumerate(homes):
            spec = ssh.MasterSpec(
                **common,
                private_key=Path(home["private_key"]),
                known_hosts=Path(data["known_hosts"]),
                control_path=sockets / str(n),
                bind_address=home.get("bind_address"),
            )
            forwards = [ssh.Forward(int(r), int(lp)) for r, lp in home["forwards"]]
            try:
                ssh.master_argv(spec)
                for forward in forwards:
                    ssh.forward_argv(spec, forward)
            except ValueError as exc:
                raise ValueError(f"homes[{n}].{exc}") from None
            plan.append(_Home(n, spec, forwards))
        return plan
    except OSError as exc:
        raise CommandError(f"--homes: cannot read {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CommandError(f"--homes: {path}: {reason}") from None


class Command(BaseCommand):
    help = (
        "Keep the SSH links of the homes in --homes (a JSON file) connected, each one master "
        "connection with its forwards, in the foreground until Ctrl-C or SIGTERM; prints one "
        "JSON event per line (connected, forwarded, refused, lost)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--homes", type=Path, required=True, help="the plan (JSON)")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _STOP_SIGNALS}
        # Control sockets where their paths stay short (sun_path), private to us.
        with tempfile.TemporaryDirectory(prefix="cah-links-") as sockets:
            homes = _plan(options["homes"], Path(sockets))
            try:
                _Swarm(homes, self._event).run(stop)
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def _event(self, home: _Home, event: str, detail: str = "") -> None:
        line: dict[str, Any] = {"t": round(time.monotonic(), 3), "home": home.n, "event": event}
        self.stdout.write(json.dumps(line | ({"detail": detail} if detail else {})))
        self.stdout.flush()


class _Swarm:
    def __init__(self, homes: list[_Home], event: Any) -> None:
        self.homes = homes
        self.event = event
        # (home, the forwards asked, its `ssh -O forward`, the master it was asked of)
        self.asking: list[tuple[_Home, list[ssh.Forward], subprocess.Popen[bytes], int]] = []

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.wait(_TICK_S):
                now = time.monotonic()
                for home in self.homes:
                    self._keep(home, now)
                self._collect()
        finally:
            self._stop_all()

    def _keep(self, home: _Home, now: float) -> None:
        master = home.master
        if master is None:
            if now >= home.retry_at:
                home.master = _spawn(ssh.master_argv(home.spec, takeover=home.takeover))
                home.pending, home.added = list(home.forwards), 0
                home.connected = home.refused = False
            return
        if master.poll() is not None:
            home.master = None
            if home.retake:  # ended by us, to connect again at once asking for the takeover
                home.retake, home.takeover, home.retry_at = False, True, now
                return
            # A master that carried every forward was a success: the next one starts over.
            home.failures = 1 if home.added == len(home.forwards) else home.failures + 1
            home.retry_at = now + ssh.next_delay(home.failures)
            self.event(home, "lost", f"ssh exited with {master.returncode}")
            return
        if home.pending and now >= home.ask_at and home.spec.control_path.exists():
            if not home.connected:
                home.connected = True
                self.event(home, "connected")
            if len(self.asking) < _ASKING_AT_ONCE and not self._is_asking(home):
                # Every pending forward in one control command; after a refusal, one at a
                # time, so the one refused is known.
                count = 1 if home.refused else len(home.pending)
                batch, home.pending = home.pending[:count], home.pending[count:]
                asked = _spawn(ssh.forward_argv(home.spec, *batch), stderr=subprocess.PIPE)
                self.asking.append((home, batch, asked, master.pid))

    def _is_asking(self, home: _Home) -> bool:
        return any(h is home for h, *_ in self.asking)

    def _collect(self) -> None:
        still = []
        for home, batch, asked, master_pid in self.asking:
            if asked.poll() is None:
                still.append((home, batch, asked, master_pid))
                continue
            reason = (asked.stderr.read() if asked.stderr else b"").decode(errors="replace")
            if home.master is None or home.master.pid != master_pid:
                continue  # that master is gone: its successor asks again
            if asked.returncode == 0:
                home.added += len(batch)
                if home.added == len(home.forwards):
                    home.failures, home.refused, home.takeover = 0, False, False
                    self.event(home, "forwarded")
            elif not home.takeover:
                # A port still held, by an older session of this home whose network died:
                # connect again asking the cloud to end that session.
                home.retake = True
                home.master.terminate()
                self.event(home, "refused", reason.strip()[-300:])
            else:
                # Refused even so (the evicted session still closing, say): ask again a second
                # later, one forward at a time (an accepted one is asked again harmlessly).
                home.pending = batch + home.pending
                home.refused = True
                home.ask_at = time.monotonic() + _REFUSED_RETRY_S
                self.event(home, "refused", reason.strip()[-300:])
        self.asking = still

    def _stop_all(self) -> None:
        masters = [h.master for h in self.homes if h.master is not None]
        for proc in [*masters, *(asked for _, _, asked, _ in self.asking)]:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in masters:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _spawn(argv: list[str], stderr: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        close_fds=True,
        cwd="/",
    )
