"""`cloudathome bench --only attack`: the floods an internet-facing edge meets, each run for a
bounded time against its own site while a victim is probed from another loopback address,
and the clients that make them (the tests trip each limit with the same ones)."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time

# --- flood clients ------------------------------------------------------------------------------


def connect_from(source: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:`port` from the loopback address `source` (127.x.y.z:
    Linux routes all of 127/8 to lo, so each one is a distinct client address for the edge)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def client_hello(sni: str) -> bytes:
    """The bytes of a real TLS ClientHello naming `sni` (what a browser sends first)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def answered(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer sent a byte within `timeout`; False when it closed or reset instead."""
    ready, _, _ = select.select([sock], [], [], timeout)
    if not ready:
        return False
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def hello(port: int, sni: str, source: str, timeout: float = 10.0) -> socket.socket | None:
    """Connect from `source`, send a ClientHello for `sni` and send nothing more: the socket
    once the home's service answered (the caller holds or closes it), None when the edge
    refused the connection (closed or reset it)."""
    try:
        sock = connect_from(source, port, timeout)
    except OSError:
        return None
    try:
        sock.sendall(client_hello(sni))
        if answered(sock, timeout):
            return sock
    except OSError:
        pass
    sock.close()
    return None


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer ends the connection within `timeout` (0: already ended), whatever it
    sent before."""
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True
