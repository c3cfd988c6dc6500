"""Real network peers for tests on loopback: HTTP(S) services standing in for a home's
service, a raw capture for PROXY v2 headers, and small TLS/HTTP clients."""

from __future__ import annotations

import contextlib
import http.client
import queue
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from workers.bench import tools as benchtools

PP2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


# --- stand-ins for the tunnel ports: real servers on loopback -------------------------------


@dataclass
class Service:
    name: str
    port: int
    cert_der: bytes = b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so HAProxy could be tempted to reuse connections

    def do_GET(self) -> None:
        body = self.server.service_name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, tls: ssl.SSLContext | None, port: int) -> None:
        self.service_name = name
        self.tls = tls
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # refused handshakes are part of the tests


@contextlib.contextmanager
def serve(
    name: str, tls: ssl.SSLContext | None = None, cert_der: bytes = b"", port: int = 0
) -> Iterator[Service]:
    """An HTTP(S) service answering its name, on `port` of 127.0.0.1 (0: a free one)."""
    server = _Server(name, tls, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Service(name, int(server.server_address[1]), cert_der)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def self_signed(directory: Path, host: str) -> tuple[ssl.SSLContext, bytes]:
    """A server context with a throwaway certificate for `host`, and that certificate (DER)."""
    cert_path, key_path, der = benchtools.self_signed(directory, host)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, der


class _Listener:
    """A TCP server on 127.0.0.1 whose connections `_serve` handles, until `close`."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = int(self.listener.getsockname()[1])
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


class RawCapture(_Listener):
    """A TCP server that records the first bytes of each connection (a PROXY v2 header)."""

    def __init__(self) -> None:
        self.seen: queue.Queue[bytes] = queue.Queue()
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            with contextlib.suppress(OSError):
                # The v2 header's length field is at 14..16; take the header and a bit more.
                while len(data) < 16 or len(data) < 16 + int.from_bytes(data[14:16]) + 8:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            self.seen.put(data)


class Echo(_Listener):
    """A TCP server that sends back every byte it gets, until the client closes."""

    def _serve(self, conn: socket.socket) -> None:
        threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(10)
            while chunk := conn.recv(65536):
                conn.sendall(chunk)


def echo_through(port: int, data: bytes, source: str = "127.0.0.1") -> bytes:
    """Send `data` to 127.0.0.1:`port` from `source` while reading what comes back, until the
    other side closes after our half-close; b"" when refused."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:

        def send() -> None:
            with contextlib.suppress(OSError):
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                received += chunk
        sender.join(10)
    return bytes(received)


def echo_refused(port: int, source: str) -> bool:
    """The edge closes the connection before the service behind it sees a byte."""
    try:
        return echo_through(port, b"ping", source) == b""
    except OSError:
        return True


# --- clients -----------------------------------------------------------------------------------


def tls_get(
    port: int, sni: str, timeout: float = 3.0, source: str = "127.0.0.1"
) -> tuple[bytes, bytes]:
    """GET / over TLS through the edge (from the loopback address `source`); returns (body,
    DER certificate the client saw)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        ) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        cert = tls.getpeercert(binary_form=True) or b""  # unavailable once the peer closes
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return data.partition(b"\r\n\r\n")[2], cert


def tls_refused(port: int, sni: str, source: str = "127.0.0.1") -> bool:
    try:
        tls_get(port, sni, source=source)
    except OSError:  # ssl.SSLError, resets and EOFs are all OSErrors
        return True
    return False


def http_get(port: int, host: str, path: str = "/", source: str = "127.0.0.1") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def routes_to(port: int, sni: str, service: Service) -> bool:
    with contextlib.suppress(OSError):
        return tls_get(port, sni)[0] == service.name.encode()
    return False


def post_form(
    session: requests.Session, url: str, data: dict[str, str], site: str = "cloud"
) -> requests.Response:
    """A page's form as a browser sends it: GET the page for its CSRF cookie, then POST."""
    session.get(url, timeout=20)
    data = {**data, "csrfmiddlewaretoken": session.cookies.get(f"cah_{site}_csrftoken", "")}
    return session.post(url, data=data, headers={"Referer": url}, timeout=20)
