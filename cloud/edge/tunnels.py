"""Which homes' tunnels are connected right now: a home's `ssh -R` makes our sshd listen on
127.0.0.1:<tunnel port>, so the kernel's table of listening sockets says it. Read from /proc,
which needs no privilege, no subprocess and no pid of sshd's."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

PROC_NET = Path("/proc/net")
_LISTEN = "0A"  # TCP_LISTEN in include/net/tcp_states.h
_LOOPBACK = "127.0.0.1"


def _listeners(table: Path) -> list[tuple[str, int]]:
    """(address as /proc prints it, port) of every listening socket in one table."""
    try:
        lines = table.read_text().splitlines()[1:]
    except FileNotFoundError:  # no IPv6 in this kernel
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == _LISTEN:
            address, _, port = fields[1].partition(":")
            found.append((address, int(port, 16)))
    return found


def tunnel_ports_listening(ssh_port: int, proc_net: Path = PROC_NET) -> set[int] | None:
    """Every port listening on 127.0.0.1, or None when our sshd's own port (`ssh_port`) is not
    among the listeners: this process then lives in another network namespace than sshd (a
    container of its own) and cannot tell which tunnels are up."""
    v4 = _listeners(proc_net / "tcp")
    if not any(port == ssh_port for _, port in v4 + _listeners(proc_net / "tcp6")):
        return None
    # /proc prints the 32-bit address in the machine's byte order.
    return {
        port
        for address, port in v4
        if socket.inet_ntoa(struct.pack("=I", int(address, 16))) == _LOOPBACK
    }
