"""The local server that answers an ACME CA's HTTP-01 or TLS-ALPN-01 validation requests.

It listens on loopback or on a unix socket only; the caller makes it reachable from the CA (the
home: an `ssh -R` tunnel behind the edge's :80 or :443; the cloud: its own HAProxy's :80, which
reaches the socket in the state dir from any container), so it must be strict about what it
serves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import socketserver
import ssl
import stat
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

logger = logging.getLogger(__name__)

ResponderMode = Literal["http-01", "tls-alpn-01"]

CHALLENGE_PATH = "/.well-known/acme-challenge/"
ACME_TLS_ALPN = "acme-tls/1"

# A validator sends one small request; anything slower is not a CA and must not pin a thread.
CLIENT_TIMEOUT = 10.0

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_KEY_AUTHORIZATION = re.compile(r"^[A-Za-z0-9_-]{1,256}\.[A-Za-z0-9_-]{1,256}$")


class _HTTPHandler(BaseHTTPRequestHandler):
    server: _TCPServer | _UnixHTTPServer
    timeout = CLIENT_TIMEOUT
    server_version = "cloudathome-acme"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        body: str | None = None
        if path.startswith(CHALLENGE_PATH):
            body = self.server.responder._key_authorization(path[len(CHALLENGE_PATH) :])
        if body is None:
            self._not_found()
            return
        data = body.encode("ascii")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # Only GET of a known token is answered; every other method gets the same 404 as an
    # unknown path, so the responder reveals nothing about itself.
    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_found

    def address_string(self) -> str:
        # A unix socket's peer has no address (HAProxy in front of the cloud's responder).
        return str(self.client_address[0]) if isinstance(self.client_address, tuple) else "unix"

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("http-01 responder %s: " + format, self.address_string(), *args)


class _TLSHandler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(CLIENT_TIMEOUT)
        try:
            with self.server.responder._tls_context.wrap_socket(sock, server_side=True) as tls:
                if tls.selected_alpn_protocol() != ACME_TLS_ALPN:
                    # The stdlib cannot refuse inside the ALPN callback, so a client without
                    # acme-tls/1 is dropped right after the handshake, before any data.
                    return
                # RFC 8737: the validator closes after the handshake; wait for that instead of
                # resetting the connection under it.
                with contextlib.suppress(OSError):
                    tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            logger.debug(
                "tls-alpn-01 responder: handshake from %s failed: %s", self.client_address[0], exc
            )


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        responder: ChallengeResponder,
        handler: type[socketserver.BaseRequestHandler],
    ) -> None:
        self.responder = responder
        super().__init__(address, handler)


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: Path, responder: ChallengeResponder) -> None:
        self.responder = responder
        super().__init__(str(path), _HTTPHandler)


_Listener = socketserver.ThreadingTCPServer | socketserver.ThreadingUnixStreamServer


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 section 4
    context.set_alpn_protocols([ACME_TLS_ALPN])
    return context


class ChallengeResponder:
    """Serve ACME challenge answers on host:port (port 0 picks a free one) while entered, or
    with `socket_path` (http-01 only) on that unix socket (0600; a stale one is replaced, and
    it is removed on stop).

    mode "http-01": `set(token, key_authorization)`, then GET /.well-known/acme-challenge/<token>
    returns the key authorization; anything else is a 404.
    mode "tls-alpn-01": `set_cert(domain, cert, key)`, then a ClientHello with SNI <domain> and
    ALPN acme-tls/1 gets that certificate; an unknown or missing SNI fails the handshake.
    """

    def __init__(
        self,
        mode: ResponderMode,
        port: int = 0,
        host: str = "127.0.0.1",
        socket_path: Path | None = None,
    ) -> None:
        if mode not in ("http-01", "tls-alpn-01"):
            raise ValueError(f"mode: must be 'http-01' or 'tls-alpn-01', not {mode!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port: {port} is not a TCP port number")
        if socket_path is not None and mode != "http-01":
            raise ValueError("socket_path: only an http-01 responder listens on a unix socket")
        self.mode: ResponderMode = mode
        self._address = (host, port)
        self.socket_path = socket_path
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        self._domain_contexts: dict[str, ssl.SSLContext] = {}
        self._tls_context = _server_context()
        self._tls_context.sni_callback = self._pick_certificate
        self._server: _Listener | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the challenge responder is not running")
        address = self._server.server_address
        if not isinstance(address, tuple):
            raise RuntimeError(f"the challenge responder listens on {self.socket_path}, no port")
        return int(address[1])

    def set(self, token: str, key_authorization: str) -> None:
        """Answer HTTP-01 requests for `token` with `key_authorization`."""
        if self.mode != "http-01":
            raise ValueError("token: only an http-01 responder serves tokens")
        if not _TOKEN.match(token):
            raise ValueError("token: must be 1-256 base64url characters")
        if not _KEY_AUTHORIZATION.match(key_authorization) or not key_authorization.startswith(
            token + "."
        ):
            raise ValueError("key_authorization: must be '<token>.<account key thumbprint>'")
        with self._lock:
            self._tokens[token] = key_authorization

    def set_cert(
        self, domain: str, cert: x509.Certificate, key: CertificateIssuerPrivateKeyTypes
    ) -> None:
        """Present `cert` to TLS-ALPN-01 validators that ask for `domain` by SNI."""
        if self.mode != "tls-alpn-01":
            raise ValueError("cert: only a tls-alpn-01 responder serves certificates")
        domain = domain.lower()
        context = _server_context()
        # ssl loads certificates from files only; these live for the duration of this call.
        with tempfile.TemporaryDirectory(prefix="acme-alpn-") as tmp:
            cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            with open(cert_path, "wb") as out:
                out.write(cert.public_bytes(serialization.Encoding.PEM))
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
            context.load_cert_chain(cert_path, key_path)
        with self._lock:
            self._domain_contexts[domain] = context

    def _key_authorization(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)

    def _pick_certificate(
        self, tls: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        with self._lock:
            context = self._domain_contexts.get((server_name or "").lower())
        if context is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        tls.context = context
        return None

    def start(self) -> ChallengeResponder:
        if self._server is not None:
            raise RuntimeError("the challenge responder is already running")
        server: _Listener
        if self.socket_path is not None:
            server = self._bind_unix(self.socket_path)
        else:
            handler = _HTTPHandler if self.mode == "http-01" else _TLSHandler
            server = _TCPServer(self._address, self, handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"acme-{self.mode}-responder",
            daemon=True,
        )
        self._thread.start()
        return self

    def _bind_unix(self, path: Path) -> _UnixHTTPServer:
        # A socket left by a run that was killed would make bind() fail; anything else at the
        # path is not ours to remove.
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ValueError(f"socket_path: {path} exists and is not a socket")
            path.unlink()
        server = _UnixHTTPServer(path, self)
        path.chmod(0o600)  # only the site's own account (HAProxy) may connect
        return server

    def stop(self) -> None:
        """Stop accepting and close the listening socket; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        if self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    def __enter__(self) -> ChallengeResponder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
