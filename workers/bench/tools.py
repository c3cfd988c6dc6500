"""Instruments of `cloudathome bench`: a real nginx HTTPS service, the load generators (wrk for
requests, curl for one big download), a TLS probe through the edge, HAProxy's Runtime API, and
per-process CPU and memory read from /proc. Everything talks to 127.0.0.1 (or a unix socket)
only and is bounded in time."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from workers.common import acme
from workers.common.files import write_atomic
from workers.local.procs import port_open, running, wait_for

MIB = 1024 * 1024
BIG_FILE = "100m"
SMALL_FILE = "1k"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Prints wrk's own figures as one JSON line: the latency percentiles are per request, in µs.
_WRK_REPORT = """\
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


# --- statistics -------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def median(values: Iterable[float]) -> float:
    data = list(values)
    return float(statistics.median(data)) if data else 0.0


# --- the home's service: nginx ----------------------------------------------------------------


@dataclass(frozen=True)
class Nginx:
    ports: tuple[int, ...]
    pid: int


def self_signed(directory: Path, host: str) -> tuple[Path, Path, bytes]:
    """A throwaway self-signed certificate for a local service: (cert, key 0600, cert DER)."""
    cert, key = acme.self_signed(host)
    cert_path, key_path = directory / f"{host}.crt", directory / f"{host}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_atomic(key_path, acme.private_pem(key), 0o600)
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


@contextlib.contextmanager
def nginx_server(root: Path, ports: Iterable[int]) -> Iterator[Nginx]:
    """Debian's nginx serving /1k and /100m over TLS on 127.0.0.1:<each port>, no access log
    (the figures are the data path's, not the disk's); stopped by PID."""
    ports = tuple(ports)
    root.mkdir(parents=True, exist_ok=True)
    www = root / "www"
    www.mkdir(exist_ok=True)
    (www / SMALL_FILE).write_bytes(b"x" * 1023 + b"\n")
    with open(www / BIG_FILE, "wb") as big:
        big.truncate(100 * MIB)  # sparse: served from the page cache, no disk in the way
    cert, key, _ = self_signed(root, "service.bench.test")
    temp = root / "temp"
    temp.mkdir(exist_ok=True)
    listens = "".join(f"        listen 127.0.0.1:{port} ssl;\n" for port in ports)
    temps = "".join(
        f"    {kind}_temp_path {temp}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = root / "nginx.conf"
    conf.write_text(f"""\
daemon off;
master_process on;
worker_processes auto;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
{temps}    server {{
{listens}        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {www};
        default_type application/octet-stream;
    }}
}}
""")
    with running(
        ["nginx", "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)],
        log=root / "nginx.out",
        ready=lambda: all(port_open(port) for port in ports),
        timeout=15,
    ) as proc:
        yield Nginx(ports, proc.pid)


# --- load generators --------------------------------------------------------------------------


_CLONE_NEWNS, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x00020000, 0x1000, 0x4000, 0x40000


def exec_with_hosts(hosts_file: Path, argv: list[str]) -> None:
    """Replace this process by `argv`, seeing `hosts_file` as its /etc/hosts (a private mount
    namespace; root only). wrk takes the TLS server name from the URL and must resolve it:
    this way the bench.test names resolve to 127.0.0.1 for wrk alone, and the machine's
    resolver is never touched. Run through `python -m workers.bench.tools` rather than a
    preexec hook, which is unsafe in a parent with threads (the tunnel reaper)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if libc.mount(os.fsencode(hosts_file), b"/etc/hosts", None, _MS_BIND, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --bind <hosts> /etc/hosts")
    os.execvp(argv[0], argv)  # noqa: S606 - an argument list, no shell


def with_hosts(hosts_file: Path, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "workers.bench.tools", str(hosts_file), *argv]


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    hosts_file: Path,
    script_dir: Path,
    new_connections: bool = False,
) -> WrkResult:
    """wrk on one thread for `seconds` (its -d bounds the run; the timeout backs it up).
    `new_connections` sends `Connection: close`, so every request is a new TCP + TLS handshake."""
    script = script_dir / "report.lua"
    if not script.exists():
        script.write_text(_WRK_REPORT)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    argv += ["-s", str(script)]
    if new_connections:
        argv += ["-H", "Connection: close"]
    done = subprocess.run(
        with_hosts(hosts_file, [*argv, url]),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith('{"requests"')), "")
    if done.returncode != 0 or not line:
        raise RuntimeError(f"wrk {url} failed ({done.returncode}): {done.stderr or done.stdout}")
    data = json.loads(line)
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=int(data["errors"]) + int(data["status_errors"]),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def download(url: str, host: str, port: int, timeout: float = 60) -> float:
    """One GET of the 100 MiB file with curl (the TLS name is `host`, the address 127.0.0.1);
    returns MB/s (10^6 bytes per second, as curl counts)."""
    argv = ["curl", "--silent", "--show-error", "--insecure", "--output", "/dev/null"]
    argv += ["--max-time", str(int(timeout)), "--resolve", f"{host}:{port}:127.0.0.1"]
    argv += ["--write-out", "%{size_download} %{time_total} %{http_code}", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10, check=False)
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 3 or parts[2] != "200":
        raise RuntimeError(f"curl {url} failed ({done.returncode}): {done.stderr.strip()}")
    size, took = int(parts[0]), float(parts[1])
    if size != 100 * MIB:
        raise RuntimeError(f"curl {url}: got {size} bytes instead of {100 * MIB}")
    return size / took / 1e6


_PROBE_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_PROBE_TLS.check_hostname = False
_PROBE_TLS.verify_mode = ssl.CERT_NONE


def tls_ok(port: int, sni: str, timeout: float = 2.0) -> bool:
    """GET /1k over TLS with SNI `sni` through 127.0.0.1:`port`: True on HTTP 200."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
            _PROBE_TLS.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            tls.sendall(f"GET /1k HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
            head = tls.recv(64)
    except OSError:  # refused, reset, handshake cut by the edge: not routable (yet)
        return False
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


def routable(port: int, sni: str) -> Callable[[], bool]:
    return lambda: tls_ok(port, sni)


def unroutable(port: int, sni: str) -> Callable[[], bool]:
    return lambda: not tls_ok(port, sni)


def time_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.002
) -> float | None:
    """Seconds until `condition()` holds (polled), or None if it did not within `timeout`."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    return None


# --- HAProxy ----------------------------------------------------------------------------------


def haproxy(socket_path: Path, command: str, timeout: float = 5.0) -> str:
    """One command on HAProxy's Runtime API (admin unix socket) and its whole reply: the bench
    times HAProxy itself, so it speaks to the socket directly rather than through a site."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(command.encode("ascii") + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def haproxy_quiet(socket_path: Path, command: str) -> None:
    """A command that answers nothing when it worked (`add map`, `del map`)."""
    reply = haproxy(socket_path, command).strip()
    if reply:
        raise RuntimeError(f"HAProxy: {command.split()[:2]}: {reply[:300]}")


# --- processes --------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rfind(")") + 2 :].split()


def listening_ports() -> set[int]:
    """TCP ports something listens on, any address, from the kernel's tables."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: with the PID, names one process for good."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def exe(pid: int) -> str:
    """The program a process runs (comm would be the 15-character name of a symlink to it)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def parent(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, grandchildren, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the processes (those that still exist)."""
    total = 0
    for pid in pids:
        if fields := _stat_fields(pid):
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from /proc/<pid>/smaps_rollup; (0, 0) when the process is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, pss


def wait_gone(pids: Iterable[int], timeout: float = 10) -> None:
    wait_for(lambda: not any(_stat_fields(p) for p in pids), timeout=timeout, what="exit")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python -m workers.bench.tools <hosts file> <argv...>")
    exec_with_hosts(Path(sys.argv[1]), sys.argv[2:])
