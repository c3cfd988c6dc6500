"""The cloud edge's HAProxy: its configuration, its route map files and its Runtime API.

This is the one door to HAProxy: it renders haproxy.cfg (TLS passthrough by SNI, plain HTTP by
Host, one dynamic backend per kind of route; TLS ended here for the cloud's own public host
only), keeps the map files and that host's certificate on disk and converges the live maps and
certificate through the admin socket so that neither ever needs a reload.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import re
import resource
import socket
import ssl
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization

from workers.common import acme
from workers.common.errors import ServiceUnavailable
from workers.common.files import write_atomic
from workers.common.names import validate_hostname
from workers.common.networks import parse, validate_networks, within

Scheme = Literal["https", "http", "tcp"]
SCHEMES: tuple[Scheme, ...] = ("https", "http", "tcp")
# The schemes routed by name (a tcp route is found by its public port).
HOST_SCHEMES: tuple[Scheme, ...] = ("https", "http")
# Every map: one of routes per scheme, and the two of the allowlists (see desired_maps).
MapName = Literal["https", "http", "tcp", "networks", "allow"]
MAPS: tuple[MapName, ...] = ("https", "http", "tcp", "networks", "allow")

# A map value is "<port>" or "<port>:pp"; the suffix sends the route through the backend that
# speaks PROXY v2. One value per host keeps a port change and a PROXY flag change one atomic
# `set map` instead of two maps that could disagree for a moment.
PROXY_V2_SUFFIX = ":pp"
# Before it, ":a" marks a route with an allowlist: only those pay for the client's lookup.
ALLOW_FLAG = ":a"

# Beyond this many changes in one map, a versioned transaction beats single commands: `set` and
# `del` scan the whole map while blocking lookups, and the commit swaps everything at once.
FULL_REPLACE_THRESHOLD = 1000

# The CLI reads a request into one 16 KB buffer; a bigger one resets the connection silently
# (measured on 2.6.12: 15.9 KB passes, 16.4 KB gets no reply), so requests stay well below.
MAX_REQUEST_BYTES = 14 * 1024

# A unix socket path longer than sun_path (108 bytes with the NUL) cannot be bound.
_MAX_SOCKET_PATH = 107

# Paths are pasted into haproxy.cfg and into CLI commands, where spaces, quotes, '#', ',', ';'
# and parentheses all mean something; the state dir is ours to choose, so keep it plain.
_SAFE_PATH = re.compile(r"[A-Za-z0-9._/+-]+")
# One word of a CLI command: whitespace separates arguments, ';' separates commands and '\\'
# escapes, so none of them may appear in a key or value we send.
_CLI_WORD = re.compile(r"[A-Za-z0-9._:@#/+-]+")
_VALUE = re.compile(r"([0-9]{1,5})(:a)?(:pp)?")

# The routes are the tenants' business: only HAProxy's own account (ours) reads them.
MAP_MODE = 0o600
# The public host's certificate file holds its private key.
PEM_MODE = 0o600

# The stick table that counts per route, keyed by tunnel port.
ROUTE_TABLE = "st_route"

# The server of the cloud's own ACME challenge responder: in maintenance but while it issues.
ACME_BACKEND, ACME_SERVER = "be_acme", "responder"

# TLS where HAProxy ends it (the cloud's public host): Mozilla's "intermediate" profile, TLS
# 1.2 and 1.3 with forward-secret AEAD ciphers only; no session tickets (their key would
# outlive every connection), and h2 for browsers.
_TLS_BIND = (
    "ssl-min-ver TLSv1.2 no-tls-tickets alpn h2,http/1.1"
    " ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    " ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
)
# Until the CA has issued the real one, HAProxy starts with a self-signed certificate for the
# public host (it refuses to start without one); short-lived, so nothing keeps it by mistake.
PLACEHOLDER_DAYS = 7

_MAP_HEADER = "# Written by cloud.edge.haproxy; the edge rewrites this file on every sync.\n"


class EdgeError(ServiceUnavailable):
    """HAProxy refused a command, answered something unexpected, or its config is invalid;
    an API call that meets one answers 503 with this message."""


class EdgeUnavailable(EdgeError):
    """The Runtime API cannot be reached (HAProxy is not running); map files are still written."""


def validate_port(port: int, field: str = "port") -> int:
    """Return `port` if it is a TCP port number (1..65535); raise ValueError naming `field`."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{field}: must be an integer from 1 to 65535, got {port!r}")
    return port


@dataclass(frozen=True)
class Route:
    """One route of the edge: traffic for `host` (https, http), or to `public_port` (tcp, no
    host), goes to 127.0.0.1:`port`; from the client networks in `allow` only, when given."""

    host: str
    port: int
    scheme: Scheme
    proxy_protocol: bool = False
    public_port: int | None = None
    allow: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """What HAProxy finds it by: the name, or the public port of a tcp route."""
        return str(self.public_port) if self.scheme == "tcp" else self.host


@dataclass(frozen=True)
class SyncResult:
    """How many live map entries one `Edge.sync` added, changed and removed (all maps summed)."""

    added: int = 0
    changed: int = 0
    removed: int = 0

    def __add__(self, other: SyncResult) -> SyncResult:
        return SyncResult(
            self.added + other.added, self.changed + other.changed, self.removed + other.removed
        )


@dataclass(frozen=True)
class RouteCounters:
    """What the edge counted for one route (tunnel port) since its st_route entry was made:
    connections open now and in all, bytes from clients (in) and to them (out)."""

    current: int
    connections: int
    bytes_in: int
    bytes_out: int


def _positive(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field}: must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class EdgeLimits:
    """What one client address and one route may take of the edge, so that a flood from one
    source, or aimed at one home from many, leaves the capacity other homes need.

    The defaults leave room for a NAT'd office: a browser opens at most 6 connections per
    host and an office of 40 people behind one address needs ~240 at once.
    """

    # Concurrent connections of one source (an IPv4 address, an IPv6 /64).
    source_conn: int = 256
    # New connections of one source in any 10 s (a page of 30 requests costs 6-30).
    source_rate: int = 600
    # Concurrent connections to one route (one tunnel port), from all sources together.
    route_conn: int = 2000
    # A ClientHello must be complete within this; then it is refused.
    hello_timeout_s: int = 3
    # The whole request head on :80 within this (slowloris), and the idle time between
    # keep-alive requests.
    request_timeout_s: int = 5
    # A connection with no byte in either direction for this long is closed (TLS passthrough
    # cannot tell a handshake that stalls from an idle WebSocket; both must ping within it).
    idle_timeout_s: int = 300
    # The control plane, per source: concurrent connections, and requests in any 10 s (over
    # it: 429). A page of 30 parallel requests, or a script creating mappings, stays under.
    web_source_conn: int = 100
    web_source_rate: int = 600
    # Sign-up forms posted from one source in any hour (100 came in 38 s, unthrottled).
    signup_rate: int = 5

    def __post_init__(self) -> None:
        for name in (
            "source_conn",
            "source_rate",
            "route_conn",
            "hello_timeout_s",
            "request_timeout_s",
            "idle_timeout_s",
            "web_source_conn",
            "web_source_rate",
            "signup_rate",
        ):
            _positive(name, getattr(self, name))
        if self.route_conn < self.source_conn:
            raise ValueError(
                f"route_conn: {self.route_conn} is below source_conn {self.source_conn};"
                " one source could then fill a route by itself"
            )


@dataclass
class EdgeConfig:
    """Where the edge keeps its files and what it listens on; every path derives from state_dir."""

    state_dir: Path
    https_port: int = 443
    http_port: int = 80
    bind: str = "0.0.0.0"  # noqa: S104 - the edge is the public entry point
    # Far above route_conn, so the per-route and per-source caps are what a flood meets.
    maxconn: int = 20000
    hard_stop_after_s: int = 30
    haproxy_bin: str = "haproxy"
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    # The control plane's public port (None: HAProxy does not front it). gunicorn listens only
    # on web_socket; web_threads is how many requests it serves at once, the rest wait here.
    web_port: int | None = None
    web_bind: str = "0.0.0.0"  # noqa: S104 - the control plane is public
    web_threads: int = 8
    # Connections and bytes per route in st_route, for the traffic each mapping shows; off
    # leaves only the concurrent connections the per-route cap needs.
    traffic_counters: bool = True
    # The cloud's own name: on https_port HAProxy ends TLS for it (public_pem) in front of the
    # control plane, and on http_port sends it to https but for its ACME challenges. None: the
    # control plane is on web_port only. No home can own it (cloud.domains.rules).
    public_host: str | None = None
    # The public ports of tcp routes, first and last (None: no tcp routes); HAProxy binds all.
    tcp_ports: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).absolute()
        if not _SAFE_PATH.fullmatch(str(self.state_dir)):
            raise ValueError(
                f"state_dir: {str(self.state_dir)!r} may only contain letters, digits and ._/+-"
            )
        longest = max(len(str(path)) for path in self.sockets)
        if longest > _MAX_SOCKET_PATH:
            raise ValueError(
                f"state_dir: too long, a unix socket path would exceed {_MAX_SOCKET_PATH} bytes"
            )
        validate_port(self.https_port, "https_port")
        validate_port(self.http_port, "http_port")
        if self.https_port == self.http_port:
            raise ValueError("http_port: must differ from https_port")
        try:
            ipaddress.ip_address(self.bind)
        except ValueError:
            raise ValueError(f"bind: {self.bind!r} is not an IP address") from None
        _positive("maxconn", self.maxconn)
        _positive("hard_stop_after_s", self.hard_stop_after_s)
        _positive("web_threads", self.web_threads)
        if self.web_port is not None:
            validate_port(self.web_port, "web_port")
            if self.web_port in (self.https_port, self.http_port):
                raise ValueError("web_port: must differ from https_port and http_port")
            try:
                ipaddress.ip_address(self.web_bind)
            except ValueError:
                raise ValueError(f"web_bind: {self.web_bind!r} is not an IP address") from None
        if self.public_host is not None:
            self.public_host = validate_hostname(self.public_host, "public_host")
            if self.web_port is None:
                raise ValueError("public_host: needs web_port (the control plane HAProxy fronts)")
        if self.tcp_ports is not None:
            first, last = self.tcp_ports
            validate_port(first, "tcp_ports")
            validate_port(last, "tcp_ports")
            if first > last:
                raise ValueError(f"tcp_ports: {first}-{last} is empty (first above last)")
            for name in ("https_port", "http_port", "web_port"):
                port = getattr(self, name)
                if port is not None and first <= port <= last:
                    raise ValueError(f"tcp_ports: {first}-{last} includes {name} {port}")

    @property
    def loaded_maps(self) -> tuple[MapName, ...]:
        """The maps HAProxy loads: tcp.map only with a frontend that reads it."""
        return tuple(name for name in MAPS if name != "tcp" or self.tcp_ports is not None)

    @property
    def tcp_range(self) -> range:
        """The public ports of tcp routes (empty when there are none)."""
        if self.tcp_ports is None:
            return range(0)
        return range(self.tcp_ports[0], self.tcp_ports[1] + 1)

    @property
    def haproxy_dir(self) -> Path:
        return self.state_dir / "haproxy"

    @property
    def config_path(self) -> Path:
        return self.haproxy_dir / "haproxy.cfg"

    @property
    def socket_path(self) -> Path:
        return self.haproxy_dir / "admin.sock"

    @property
    def pid_path(self) -> Path:
        return self.haproxy_dir / "haproxy.pid"

    @property
    def web_socket(self) -> Path:
        """Where gunicorn listens: a unix socket in a folder only the site's account enters."""
        return self.state_dir / "web" / "gunicorn.sock"

    @property
    def maps_dir(self) -> Path:
        return self.haproxy_dir / "maps"

    @property
    def exporter_socket(self) -> Path:
        """HAProxy's own Prometheus exporter: a socket of the site's account, no TCP port."""
        return self.haproxy_dir / "prometheus.sock"

    @property
    def public_pem(self) -> Path:
        """The public host's certificate, its chain and its key in one file (0600)."""
        return self.haproxy_dir / "public.pem"

    @property
    def web_tls_socket(self) -> Path:
        """Where the control plane's frontend ends TLS for the public host (PROXY v2 in)."""
        return self.haproxy_dir / "web-tls.sock"

    @property
    def acme_socket(self) -> Path:
        """Where the cloud's ACME challenge responder listens while it issues."""
        return self.haproxy_dir / "acme.sock"

    @property
    def sockets(self) -> list[Path]:
        """Every unix socket of the edge (each path must fit in sun_path)."""
        return [
            self.socket_path,
            self.exporter_socket,
            self.web_tls_socket,
            self.acme_socket,
            self.web_socket,
        ]

    def map_path(self, name: MapName) -> Path:
        """The file of one map (a scheme's routes, or an allowlist map); also the map's name
        on the Runtime API."""
        if name not in MAPS:
            raise ValueError(f"map: must be one of {MAPS}, got {name!r}")
        return self.maps_dir / f"{name}.map"


def _fd_reserve(cfg: EdgeConfig) -> int:
    # Each public tcp port is a listener of its own.
    return 100 + 4 * (os.cpu_count() or 1) + len(cfg.tcp_range)


def nofile_wanted(cfg: EdgeConfig) -> int:
    """Open files HAProxy needs for cfg.maxconn: two per proxied connection plus a reserve for
    its threads, listeners and sockets."""
    return 2 * cfg.maxconn + _fd_reserve(cfg)


def effective_maxconn(cfg: EdgeConfig, nofile_limit: int | None = None) -> int:
    """cfg.maxconn lowered so HAProxy's file descriptors fit the hard RLIMIT_NOFILE.

    HAProxy needs about 2 fds per connection plus some per thread and listener, and refuses to
    start when that is above the hard limit ("Cannot raise FD limit"). The limit is read from this
    process unless given, so render the config in the process (or user) that runs HAProxy.
    """
    if nofile_limit is None:
        nofile_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile_limit == resource.RLIM_INFINITY or nofile_limit < 0:
        return cfg.maxconn
    return max(1, min(cfg.maxconn, (nofile_limit - _fd_reserve(cfg)) // 2))


def raise_nofile(cfg: EdgeConfig) -> str | None:
    """Raise this process's RLIMIT_NOFILE (the HAProxy it starts inherits it) to what
    cfg.maxconn needs, as far as it may; None when it fits, else the line saying what is short.

    The soft limit goes up to the hard one; the hard limit only with CAP_SYS_RESOURCE (root
    outside a container), up to fs.nr_open.
    """
    wanted = nofile_wanted(cfg)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, wanted))
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    reach = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < reach:
        resource.setrlimit(resource.RLIMIT_NOFILE, (reach, hard))
    allowed = effective_maxconn(cfg, hard)
    if allowed >= cfg.maxconn:
        return None
    line = (
        f"edge: the open-file limit ({hard}) allows HAProxy maxconn {allowed} of {cfg.maxconn};"
        f" raise the hard limit to {wanted} (ulimit -Hn, systemd LimitNOFILE=, compose ulimits)"
    )
    if allowed <= cfg.limits.route_conn:
        line += (
            f". At or below the per-route cap ({cfg.limits.route_conn}) a flood at one home"
            " can take every connection"
        )
    return line


def render_config(cfg: EdgeConfig, nofile_limit: int | None = None) -> str:
    """The whole haproxy.cfg for `cfg`. Routes live in the map files, never in this text."""
    https_map = cfg.map_path("https")
    http_map = cfg.map_path("http")
    lim = cfg.limits
    # One check for the caps of a source, run on every new connection before anything is read:
    # an IPv6 client usually holds a whole /64, so that is one source.
    source_rules = f"""\
    tcp-request connection track-sc0 src,ipmask(32,64) table st_source
    tcp-request connection reject if {{ sc0_conn_cur gt {lim.source_conn} }} || {{ sc0_conn_rate gt {lim.source_rate} }}"""
    public = _public_rules(cfg)
    return f"""\
# Generated by cloud.edge.haproxy; edit the code, not this file.
global
    maxconn {effective_maxconn(cfg, nofile_limit)}
    # After a reload the old worker keeps its old maps while its connections live.
    hard-stop-after {cfg.hard_stop_after_s}s
    stats socket {cfg.socket_path} mode 600 level admin expose-fd listeners
    stats timeout 30s
    log stdout format raw local0 info

defaults
    log global
    option dontlognull
    timeout connect 5s
    timeout client {lim.idle_timeout_s}s
    timeout server {lim.idle_timeout_s}s
    timeout tunnel {lim.idle_timeout_s}s
    timeout client-fin 10s
    timeout server-fin 10s

# Per source address: concurrent connections and new connections in 10 s, over :443 and :80.
backend st_source
    stick-table type ipv6 size 200k expire 60s store conn_cur,conn_rate(10s)

{_route_table(cfg)}

# TLS passes through untouched: the home's own service terminates it with its own certificate.
frontend fe_https
    mode tcp
    option tcplog
    bind {cfg.bind}:{cfg.https_port}
{source_rules}
    tcp-request inspect-delay {lim.hello_timeout_s}s
    tcp-request content reject unless {{ req.ssl_hello_type 1 }}
{public["sni"]}    tcp-request content set-var(sess.route) req.ssl_sni,lower,map({https_map})
{_passthrough(cfg, "https", "req.ssl_sni,lower")}
{public["sni_backend"]}    use_backend be_https_pp if {{ var(sess.route) -m end {PROXY_V2_SUFFIX} }}
    default_backend be_https

# Plain HTTP (ACME HTTP-01 and http sites), routed by the Host header without its port.
frontend fe_http
    mode http
    option httplog
    option forwardfor
    bind {cfg.bind}:{cfg.http_port}
{source_rules}
    timeout http-request {lim.request_timeout_s}s
    timeout http-keep-alive {lim.request_timeout_s}s
    # req.hdr() would take the last of several names ("Host: a.example, b.example"): refuse.
    http-request deny deny_status 400 if {{ req.hdr_cnt(host) gt 1 }}
{public["http"]}    http-request set-var(txn.route) req.hdr(host),host_only,lower,map({http_map})
    http-request set-var(txn.port) var(txn.route),field(1,:),add(0)
    http-request deny deny_status 404 unless {{ var(txn.port) -m int 1:65535 }}
{_allow_rules(cfg, "http", "req.hdr(host),host_only,lower")}
    http-request track-sc1 var(txn.port) table {ROUTE_TABLE}
    http-request deny deny_status 503 if {{ sc1_conn_cur gt {lim.route_conn} }}
    http-request set-dst-port var(txn.port)
{public["http_backend"]}    use_backend be_http_pp if {{ var(txn.route) -m end {PROXY_V2_SUFFIX} }}
    default_backend be_http

{_tcp_section(cfg, source_rules)}{_web_section(cfg)}{public["backends"]}
# One server per backend for every route: the address is pinned to loopback (where sshd listens
# for the tunnels) and, having no port, it takes the destination port set from the map above.
# The tcp routes share the TLS passthrough ones: both relay bytes they never read.
backend be_https
    mode tcp
    server tunnel 127.0.0.1

backend be_https_pp
    mode tcp
    server tunnel 127.0.0.1 send-proxy-v2

# Never share a server connection between clients: each one may belong to another home.
backend be_http
    mode http
    http-reuse never
    server tunnel 127.0.0.1

backend be_http_pp
    mode http
    http-reuse never
    server tunnel 127.0.0.1 send-proxy-v2

# HAProxy's own Prometheus exporter, read by the cloud's /metrics (which decides who may see it).
frontend fe_prometheus
    mode http
    no log
    bind unix@{cfg.exporter_socket} mode 600
    http-request use-service prometheus-exporter
"""


def _allow_rules(cfg: EdgeConfig, scheme: Scheme, key: str) -> str:
    """The allowlist check of one frontend, after its route is found and before anything is
    sent on: a route flagged ALLOW_FLAG serves a client only if the most specific allowlist
    network holding its address (networks.map, longest prefix first) is granted to the route
    (allow.map holds "<network>@<scheme>/<key>"; see Edge.desired_maps). A refused client is
    closed (a 403 on http); a route without an allowlist pays one substring test."""
    if scheme == "http":
        scope, rule, refuse = "txn", "http-request", "deny deny_status 403"
    else:
        scope, rule, refuse = "sess", "tcp-request content", "reject"
    restricted = f"{{ var({scope}.route) -m sub {ALLOW_FLAG} }}"
    grant = f"%[src,map_ip({cfg.map_path('networks')})]@{scheme}/%[{key}]"
    return f"""    {rule} set-var-fmt({scope}.grant) "{grant}" if {restricted}
    {rule} {refuse} if {restricted} !{{ var({scope}.grant),map({cfg.map_path("allow")}) -m found }}"""


def _passthrough(cfg: EdgeConfig, scheme: Scheme, key: str) -> str:
    """The rules of a frontend that relays bytes, once its route (sess.route) is found: to the
    tunnel port it names, within the allowlist and the per-route cap."""
    return f"""\
    # add(0) casts the port to an integer so that the range check below is numeric; an unknown
    # name leaves the variable unset and the check rejects the connection.
    tcp-request content set-var(sess.port) var(sess.route),field(1,:),add(0)
    tcp-request content reject unless {{ var(sess.port) -m int 1:65535 }}
{_allow_rules(cfg, scheme, key)}
    tcp-request content track-sc1 var(sess.port) table {ROUTE_TABLE}
    tcp-request content reject if {{ sc1_conn_cur gt {cfg.limits.route_conn} }}
    tcp-request content set-dst-port var(sess.port)"""


def _tcp_section(cfg: EdgeConfig, source_rules: str) -> str:
    if cfg.tcp_ports is None:
        return ""
    first, last = cfg.tcp_ports
    return f"""
# Raw TCP: each public port of the range is one home's route, found by the port the client
# dialed; the bytes pass untouched (no inspection, so a server that speaks first, like sshd, works).
frontend fe_tcp
    mode tcp
    option tcplog
    bind {cfg.bind}:{first}-{last}
{source_rules}
    tcp-request content set-var(sess.route) dst_port,map_int({cfg.map_path("tcp")})
{_passthrough(cfg, "tcp", "dst_port")}
    use_backend be_https_pp if {{ var(sess.route) -m end {PROXY_V2_SUFFIX} }}
    default_backend be_https
"""


def _route_table(cfg: EdgeConfig) -> str:
    # An entry outlives its last connection by an hour: far longer than the traffic sampler's
    # period, so what a route counted is read before its entry goes.
    counters = ",conn_cnt,bytes_in_cnt,bytes_out_cnt" if cfg.traffic_counters else ""
    return f"""\
# Per route (the tunnel port a name maps to): concurrent connections from every source (the
# per-route cap), and with the traffic counters connections and bytes since the entry was made.
backend {ROUTE_TABLE}
    stick-table type integer size 100k expire 1h store conn_cur{counters}"""


def _public_rules(cfg: EdgeConfig) -> dict[str, str]:
    """The lines of the cloud's own name in the :443 and :80 frontends, and its backends
    (all empty without one). It is no route: no home can own it, and it never reaches a map."""
    host = cfg.public_host
    if host is None:
        return dict.fromkeys(("sni", "sni_backend", "http", "http_backend", "backends"), "")
    port = "" if cfg.https_port == 443 else f":{cfg.https_port}"
    return {
        "sni": f"""\
    # The cloud's own name: TLS ends here, in front of the control plane (be_web_tls).
    acl cloud_sni req.ssl_sni -i {host}
    tcp-request content accept if cloud_sni
""",
        "sni_backend": "    use_backend be_web_tls if cloud_sni\n",
        "http": f"""\
    # The cloud's own name: its ACME challenges go to its responder, everything else to https.
    acl cloud_host req.hdr(host),host_only,lower -m str {host}
    http-request redirect prefix https://{host}{port} code 301 if cloud_host !{{ path_beg /.well-known/acme-challenge/ }}
    http-request allow if cloud_host
""",
        "http_backend": f"    use_backend {ACME_BACKEND} if cloud_host\n",
        "backends": f"""
# The cloud's own name after its ClientHello: to the control plane's TLS listener, with the
# client's address in PROXY v2 so that the per-source limits there count the client.
backend be_web_tls
    mode tcp
    server web unix@{cfg.web_tls_socket} send-proxy-v2

# The cloud's own ACME challenge responder, a socket of the worker while it issues (the Runtime
# API sets the server ready, then back to maintenance: a 503 at once the rest of the time).
backend {ACME_BACKEND}
    mode http
    http-reuse never
    server {ACME_SERVER} unix@{cfg.acme_socket} disabled
""",
    }


def _web_section(cfg: EdgeConfig) -> str:
    if cfg.web_port is None:
        return ""
    lim = cfg.limits
    too_many = json.dumps(
        {"detail": "too many requests from your address; retry in 10 seconds"}
    ).replace('"', '\\"')
    slow_down = json.dumps(
        {"detail": "too many sign-ups from your address; retry in an hour"}
    ).replace('"', '\\"')
    busy = json.dumps(
        {"detail": "the control plane is busy or restarting; retry in a few seconds"}
    ).replace('"', '\\"')
    tls_bind = (
        f"    bind unix@{cfg.web_tls_socket} mode 600 accept-proxy ssl crt {cfg.public_pem} {_TLS_BIND}\n"
        if cfg.public_host
        else ""
    )
    return f"""
# The control plane. gunicorn has a few threads and listens only on a unix socket: HAProxy
# reads each request whole (head and body) before a thread sees it, and queues the rest, so
# slow clients cost HAProxy a connection each, never a thread.
backend st_web_source
    stick-table type ipv6 size 100k expire 60s store conn_cur,http_req_rate(10s)

backend st_web_signup
    stick-table type ipv6 size 100k expire 1h store http_req_rate(1h)

frontend fe_web
    mode http
    option httplog
    bind {cfg.web_bind}:{cfg.web_port}
{tls_bind}\
    # Per session, not per connection: on the TLS listener only the session knows the client's
    # address (from PROXY v2), the connection's is HAProxy's own socket.
    tcp-request session track-sc0 src,ipmask(32,64) table st_web_source
    tcp-request session reject if {{ sc0_conn_cur gt {lim.web_source_conn} }}
    timeout http-request {lim.request_timeout_s}s
    timeout http-keep-alive {lim.request_timeout_s}s
    option http-buffer-request
    http-request deny deny_status 429 content-type application/json string "{too_many}" hdr Retry-After 10 if {{ sc0_http_req_rate gt {lim.web_source_rate} }}
    http-request track-sc1 src,ipmask(32,64) table st_web_signup if {{ path /signup/ }} {{ method POST }}
    http-request deny deny_status 429 content-type application/json string "{slow_down}" hdr Retry-After 3600 if {{ sc1_http_req_rate gt {lim.signup_rate} }}
    # The one address and scheme Django may trust: whatever the client sent is replaced (and
    # gunicorn's other scheme headers dropped, it would read them too).
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http unless {{ ssl_fc }}
    http-request del-header X-Forwarded-Ssl
    http-request del-header X-Forwarded-Protocol
    # A password check costs ~0.3 s of CPU: they get a few threads of their own, so guessing
    # from any number of addresses queues behind itself instead of stalling every page.
    use_backend be_web_auth if {{ method POST }} {{ path /login/ /admin/login/ /api/auth/token /signup/ }}
    default_backend be_web

backend be_web
    mode http
    timeout queue 10s
    http-error status 503 content-type application/json string "{busy}"
    http-error status 504 content-type application/json string "{busy}"
    server web unix@{cfg.web_socket} maxconn {cfg.web_threads}

backend be_web_auth
    mode http
    timeout queue 10s
    http-error status 503 content-type application/json string "{busy}"
    http-error status 504 content-type application/json string "{busy}"
    server web unix@{cfg.web_socket} maxconn {max(1, cfg.web_threads // 4)}
"""


def config_command(cfg: EdgeConfig) -> list[str]:
    """argv that runs HAProxy in the foreground as master + worker (for the site supervisor).

    Call write_config first. SIGUSR2 to the master reloads; SIGTERM stops both; a worker whose
    master dies exits by itself.
    """
    return [
        cfg.haproxy_bin,
        "-W",
        "-db",
        "-f",
        str(cfg.config_path),
        "-p",
        str(cfg.pid_path),
    ]


def check_config(cfg: EdgeConfig, path: Path | None = None) -> None:
    """Run `haproxy -c` on `path` (default: the installed config); raise EdgeError if invalid."""
    target = path or cfg.config_path
    proc = subprocess.run(
        [cfg.haproxy_bin, "-c", "-f", str(target)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).splitlines()
        output = " | ".join(line for line in lines if line and "[NOTICE]" not in line)
        raise EdgeError(f"haproxy -c: {target} is invalid: {output[-2000:]}")


def write_config(cfg: EdgeConfig, nofile_limit: int | None = None) -> Path:
    """Install haproxy.cfg (checked with `haproxy -c` before it replaces the old one).

    Creates empty map files when missing, since HAProxy refuses to start without them; existing
    maps are left alone because they hold the routes a restarted HAProxy must come back with.
    Likewise a self-signed placeholder for the public host until its real certificate exists.
    """
    cfg.maps_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cfg.web_socket.parent.mkdir(mode=0o700, exist_ok=True)
    for name in MAPS:
        if not cfg.map_path(name).exists():
            write_atomic(cfg.map_path(name), _MAP_HEADER, MAP_MODE)
    if cfg.public_host and not cfg.public_pem.exists():
        cert, key = acme.self_signed(cfg.public_host, PLACEHOLDER_DAYS)
        pem = cert.public_bytes(serialization.Encoding.PEM) + acme.private_pem(key)
        write_atomic(cfg.public_pem, pem, PEM_MODE)
    text = render_config(cfg, nofile_limit)
    try:
        write_atomic(cfg.config_path, text, 0o600, check=lambda staged: check_config(cfg, staged))
    except EdgeError as exc:
        raise EdgeError(f"{cfg.config_path} left as it was: {exc}") from None
    return cfg.config_path


def _cli_word(field: str, word: str) -> str:
    if not _CLI_WORD.fullmatch(word):
        raise ValueError(f"{field}: {word!r} is not a safe Runtime API argument")
    return word


class RuntimeAPI:
    """HAProxy's Runtime API on its admin unix socket: one connection per command.

    Every reply is checked: a command that should answer nothing raises EdgeError on any text,
    naming the command and the reply.
    """

    def __init__(self, socket_path: Path | str, timeout: float = 5.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def command(self, cmd: str, payload: Sequence[str] | None = None) -> str:
        """Send one command (with optional payload lines) and return HAProxy's whole reply.

        `cmd` goes out as given (';' would chain commands), so the typed methods below, which
        check every argument, are the way to change maps. The timeout applies to each read.
        """
        name = " ".join(cmd.split()[:2])
        if "\n" in cmd or "\r" in cmd:
            raise ValueError("cmd: must be a single line")
        if payload is not None:
            # The payload ends at the first empty line; whatever followed would run as commands.
            if any(not line or "\n" in line or "\r" in line for line in payload):
                raise ValueError("payload: lines must be non-empty and without line breaks")
            request = cmd + " <<\n" + "".join(line + "\n" for line in payload) + "\n"
        else:
            request = cmd + "\n"
        data = request.encode("ascii")
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError(f"payload: {len(data)} bytes, the Runtime API takes at most ~16 KB")
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            raise EdgeError(f"{name}: cannot create a unix socket: {exc}") from exc
        with sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise EdgeUnavailable(
                    f"{name}: HAProxy Runtime API not reachable at {self.socket_path}: {exc}"
                ) from exc
            except PermissionError as exc:
                # The socket is mode 600: only HAProxy's own user may speak to it.
                raise EdgeError(
                    f"{name}: no permission on {self.socket_path}; run as HAProxy's user"
                ) from exc
            except OSError as exc:
                raise EdgeError(f"{name}: cannot connect to {self.socket_path}: {exc}") from exc
            chunks: list[bytes] = []
            try:
                sock.sendall(data)
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except TimeoutError as exc:
                raise EdgeError(f"{name}: no complete reply within {self.timeout}s") from exc
            except OSError as exc:
                raise EdgeError(f"{name}: connection failed: {exc}") from exc
        reply = b"".join(chunks).decode("utf-8", errors="replace")
        # Every answer, even an empty one, ends with a newline; nothing at all means HAProxy
        # dropped the connection (an oversized request does exactly that).
        if not reply.endswith("\n"):
            raise EdgeError(f"{name}: connection closed without a complete reply: {reply[-200:]!r}")
        return reply

    def _expect_nothing(self, cmd: str, payload: Sequence[str] | None = None) -> None:
        reply = self.command(cmd, payload)
        if reply.strip():
            name = " ".join(cmd.split()[:2])
            raise EdgeError(f"{name}: unexpected reply {reply.strip()[:500]!r}")

    def map_entries(
        self, map_name: Path | str, version: int | None = None
    ) -> list[tuple[str, str]]:
        """Every (key, value) of a map in HAProxy's order, duplicates included."""
        target = _cli_word("map", str(map_name))
        ver = f"@{version} " if version is not None else ""
        reply = self.command(f"show map {ver}{target}")
        entries: list[tuple[str, str]] = []
        for line in reply.splitlines():
            if not line:
                continue
            parts = line.split(" ", 2)
            if len(parts) != 3 or not parts[0].startswith("0x"):
                raise EdgeError(f"show map: unexpected reply {reply.strip()[:500]!r}")
            entries.append((parts[1], parts[2]))
        return entries

    def show_map(self, map_name: Path | str) -> dict[str, str]:
        """A map as a dict; with duplicate keys the first one wins, as it does for lookups."""
        result: dict[str, str] = {}
        for key, value in self.map_entries(map_name):
            result.setdefault(key, value)
        return result

    def add_map(self, map_name: Path | str, key: str, value: str) -> None:
        """Add an entry. HAProxy does not check for an existing key: a second add duplicates."""
        m, k, v = _cli_word("map", str(map_name)), _cli_word("key", key), _cli_word("value", value)
        self._expect_nothing(f"add map {m} {k} {v}")

    def set_map(self, map_name: Path | str, key: str, value: str) -> None:
        """Change the value of an existing key (EdgeError when the key is absent)."""
        m, k, v = _cli_word("map", str(map_name)), _cli_word("key", key), _cli_word("value", value)
        self._expect_nothing(f"set map {m} {k} {v}")

    def del_map(self, map_name: Path | str, key: str) -> None:
        """Delete every entry of a key (EdgeError when the key is absent)."""
        m, k = _cli_word("map", str(map_name)), _cli_word("key", key)
        self._expect_nothing(f"del map {m} {k}")

    def get_map(self, map_name: Path | str, key: str) -> str | None:
        """The value HAProxy matches for `key` (a lookup, not a scan of the map), or None."""
        reply = self.command(f"get map {_cli_word('map', str(map_name))} {_cli_word('key', key)}")
        if "found=no" in reply:
            return None
        found = re.search(r'found=yes.*\bvalue="([^"]*)"', reply)
        if not found:
            raise EdgeError(f"get map: unexpected reply {reply.strip()[:500]!r}")
        return found.group(1)

    def prepare_map(self, map_name: Path | str) -> int:
        """Open a new invisible version of a map and return its number."""
        m = _cli_word("map", str(map_name))
        reply = self.command(f"prepare map {m}")
        found = re.fullmatch(r"New version created: (\d+)\s*", reply)
        if not found:
            raise EdgeError(f"prepare map: unexpected reply {reply.strip()[:500]!r}")
        return int(found.group(1))

    def add_map_version(
        self, map_name: Path | str, version: int, entries: Iterable[tuple[str, str]]
    ) -> None:
        """Add entries to a prepared version, in as few requests as the size limit allows."""
        m = _cli_word("map", str(map_name))
        cmd = f"add map @{int(version)} {m}"
        budget = MAX_REQUEST_BYTES - len(cmd) - 8
        batch: list[str] = []
        size = 0
        for key, value in entries:
            line = f"{_cli_word('key', key)} {_cli_word('value', value)}"
            if batch and size + len(line) + 1 > budget:
                self._expect_nothing(cmd, batch)
                batch, size = [], 0
            batch.append(line)
            size += len(line) + 1
        if batch:
            self._expect_nothing(cmd, batch)

    def commit_map(self, map_name: Path | str, version: int) -> None:
        """Make a prepared version the live one at once and purge every other version."""
        m = _cli_word("map", str(map_name))
        self._expect_nothing(f"commit map @{int(version)} {m}")

    def replace_map(self, map_name: Path | str, entries: Iterable[tuple[str, str]]) -> None:
        """Replace a whole map atomically (no gap, no reload) with a versioned transaction."""
        version = self.prepare_map(map_name)
        self.add_map_version(map_name, version, entries)
        self.commit_map(map_name, version)

    def info(self) -> dict[str, str]:
        """`show info` as a dict (Name, Version, Pid, Start_time_sec, ...)."""
        reply = self.command("show info")
        info = dict(line.split(": ", 1) for line in reply.splitlines() if ": " in line)
        if "Pid" not in info:
            raise EdgeError(f"show info: unexpected reply {reply.strip()[:500]!r}")
        return info

    def set_server_state(self, backend: str, server: str, state: str) -> None:
        """`ready`, `drain` or `maint` for one server, until the next reload."""
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"state: must be ready, drain or maint, not {state!r}")
        target = f"{_cli_word('backend', backend)}/{_cli_word('server', server)}"
        self._expect_nothing(f"set server {target} state {state}")

    def set_ssl_cert(self, path: Path | str, pem: str) -> None:
        """Replace a loaded certificate in memory with `pem` (certificate, chain, key) in one
        transaction: every handshake from the commit on gets it, without a reload."""
        name = _cli_word("certificate", str(path))
        reply = self.command(f"set ssl cert {name}", [line for line in pem.splitlines() if line])
        if not reply.startswith("Transaction "):
            with contextlib.suppress(EdgeError):
                self.command(f"abort ssl cert {name}")
            raise EdgeError(f"set ssl cert: unexpected reply {reply.strip()[:500]!r}")
        reply = self.command(f"commit ssl cert {name}")
        if "Success!" not in reply:
            raise EdgeError(f"commit ssl cert: unexpected reply {reply.strip()[:500]!r}")

    def show_ssl_cert(self, path: Path | str) -> dict[str, str]:
        """What HAProxy holds for a certificate file: Serial, notAfter, Subject, ..."""
        reply = self.command(f"show ssl cert {_cli_word('certificate', str(path))}")
        found = dict(line.split(": ", 1) for line in reply.splitlines() if ": " in line)
        if "Serial" not in found:
            raise EdgeError(f"show ssl cert: unexpected reply {reply.strip()[:500]!r}")
        return found

    def show_table(self, table: str, key: str | None = None) -> dict[str, dict[str, int]]:
        """The entries of a stick table (only `key`'s when given, a lookup rather than a dump
        of the table): key -> {stored counter: value}."""
        only = f" key {_cli_word('key', key)}" if key is not None else ""
        reply = self.command(f"show table {_cli_word('table', table)}{only}")
        lines = reply.splitlines()
        if key is not None and not reply.strip():
            return {}  # a key the table does not hold: HAProxy answers an empty line
        if not lines or not lines[0].startswith(f"# table: {table},"):
            raise EdgeError(f"show table: unexpected reply {reply.strip()[:500]!r}")
        entries: dict[str, dict[str, int]] = {}
        for line in lines[1:]:
            if not line:
                continue
            address, _, rest = line.partition(": ")
            fields = dict(f.split("=", 1) for f in rest.split() if "=" in f)
            if not address.startswith("0x") or "key" not in fields:
                raise EdgeError(f"show table: unexpected line {line[:200]!r}")
            key = fields.pop("key")
            entries[key] = {k: int(v) for k, v in fields.items() if v.isdigit()}
        return entries


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def exporter_text(cfg: EdgeConfig, timeout: float = 5.0) -> str:
    """What HAProxy's Prometheus exporter says now (its text format), from its socket."""
    conn = _UnixHTTPConnection(cfg.exporter_socket, timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read().decode("utf-8", errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        raise EdgeUnavailable(f"prometheus exporter at {cfg.exporter_socket}: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise EdgeError(f"prometheus exporter: HTTP {response.status}")
    return body


def _check_pem(path: Path) -> None:
    """A certificate file HAProxy can start from: a certificate, then its chain, and the key
    that matches it (OpenSSL's own check)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(path)
    except (ssl.SSLError, OSError) as exc:
        raise EdgeError(
            f"the public host's certificate: not a certificate with its key ({exc})"
        ) from None


def _map_value(route: Route, restricted: bool) -> str:
    flag = ALLOW_FLAG if restricted else ""
    return f"{route.port}{flag}{PROXY_V2_SUFFIX if route.proxy_protocol else ''}"


def _render_map(entries: dict[str, str]) -> str:
    return _MAP_HEADER + "".join(f"{key} {entries[key]}\n" for key in sorted(entries))


class Edge:
    """Converges HAProxy's route maps (files and live) to a desired list of routes.

    `sync` is not re-entrant: two runs at once can both see a key missing and both add it,
    leaving a duplicate. Callers serialize it across processes (the edge-sync Redis lock).
    """

    def __init__(self, cfg: EdgeConfig, api: RuntimeAPI | None = None) -> None:
        self.cfg = cfg
        self.api = api or RuntimeAPI(cfg.socket_path)

    def desired_maps(self, routes: Iterable[Route]) -> dict[MapName, dict[str, str]]:
        """Validate every route and lay them out as map contents, one dict per map.

        Allowlists become two maps that only `add`/`del` ever change: networks.map holds every
        network of every allowlist (its own name as value), allow.map "<network>@<route>" for
        each network a route's allowlist contains. HAProxy's longest-prefix match gives the
        most specific network holding the client; every allowlist network holding the client
        holds that one, so a route allows the client exactly when that pair is in allow.map.
        """
        maps: dict[MapName, dict[str, str]] = {name: {} for name in MAPS}
        own_ports = {self.cfg.https_port, self.cfg.http_port}
        public = self.cfg.tcp_range
        restricted: list[tuple[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]] = []
        for route in routes:
            if route.scheme not in SCHEMES:
                raise ValueError(f"scheme: must be one of {SCHEMES}, got {route.scheme!r}")
            port = validate_port(route.port)
            if port in own_ports or port in public:
                raise ValueError(f"port: {port} is the edge's own listener, it would loop")
            if not isinstance(route.proxy_protocol, bool):
                raise ValueError("proxy_protocol: must be a boolean")
            if route.scheme == "tcp":
                if route.host:
                    raise ValueError("host: a tcp route has none, it has a public_port")
                key = str(validate_port(route.public_port or 0, "public_port"))
                if int(key) not in public:
                    raise ValueError(f"public_port: {key} is outside the edge's tcp ports")
                twice = f"public_port: {key} appears twice"
            else:
                if route.public_port is not None:
                    raise ValueError("public_port: only a tcp route has one")
                key = validate_hostname(route.host)
                twice = f"host: {key} appears twice for {route.scheme}"
            if key in maps[route.scheme]:
                raise ValueError(twice)
            allow = parse(validate_networks(route.allow))
            maps[route.scheme][key] = _map_value(route, bool(allow))
            if allow:
                restricted.append((f"{route.scheme}/{key}", allow))
        cells = {net for _, allow in restricted for net in allow}
        for cell in cells:
            maps["networks"][str(cell)] = str(cell)
            for grant, allow in restricted:
                if any(within(cell, net) for net in allow):
                    maps["allow"][f"{cell}@{grant}"] = "1"
        return maps

    def write_maps(self, maps: dict[MapName, dict[str, str]]) -> None:
        """Write each map file atomically, skipping the ones whose content is already right."""
        self.cfg.maps_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, entries in maps.items():
            path = self.cfg.map_path(name)
            text = _render_map(entries)
            with contextlib.suppress(FileNotFoundError):
                if path.read_text(encoding="ascii") == text:
                    continue
            write_atomic(path, text, MAP_MODE)

    def sync(self, routes: Iterable[Route]) -> SyncResult:
        """Make the map files and the live maps hold exactly `routes`.

        Validation comes first, so one bad route changes nothing. Files are written before the
        Runtime API is touched: if HAProxy is down this raises EdgeUnavailable with the files
        already right, and HAProxy reads them when it starts. The route maps go first: a route
        that gains an allowlist refuses every client until its grants follow, never the reverse.
        """
        maps = self.desired_maps(routes)
        self.write_maps(maps)
        result = SyncResult()
        for name in self.cfg.loaded_maps:
            result += self._apply(self.cfg.map_path(name), maps[name])
        return result

    def _apply(self, map_path: Path, desired: dict[str, str]) -> SyncResult:
        entries = self.api.map_entries(map_path)
        live: dict[str, str] = {}
        duplicated: set[str] = set()
        for key, value in entries:
            if key in live:
                duplicated.add(key)
            live.setdefault(key, value)
        added = [key for key in desired if key not in live]
        changed = [
            key
            for key in desired
            if key in live and (live[key] != desired[key] or key in duplicated)
        ]
        removed = [key for key in live if key not in desired]
        total = len(added) + len(changed) + len(removed)
        # `set map` would leave a duplicate in place (it sets every copy); only a hand-made
        # `add map` creates one, and a full replace cleans it up.
        if total > FULL_REPLACE_THRESHOLD or duplicated:
            self.api.replace_map(map_path, sorted(desired.items()))
        else:
            for key in added:
                self.api.add_map(map_path, key, desired[key])
            for key in changed:
                self.api.set_map(map_path, key, desired[key])
            for key in removed:
                self.api.del_map(map_path, key)
        return SyncResult(len(added), len(changed), len(removed))

    def update(self, host: str, routes: Iterable[Route]) -> SyncResult:
        """Converge the live maps for one hostname; `routes` are all of `host`'s routes.

        One lookup and at most one add/set/del per scheme: no scan (`set`/`del` scan a map
        to find every copy of a key, `show map` reads it whole), so the cost does not grow
        with the map. The files are the caller's next step (write_maps with every route).
        A route with an allowlist needs `sync` (its grants are shared): here it stays closed.
        """
        host = validate_hostname(host)
        wanted = self.desired_maps(r for r in routes if r.host == host)
        result = SyncResult()
        for scheme in HOST_SCHEMES:
            path = self.cfg.map_path(scheme)
            live = self.api.get_map(path, host)
            value = wanted[scheme].get(host)
            if value is not None and live is None:
                self.api.add_map(path, host, value)
                result += SyncResult(added=1)
            elif value is not None and live != value:
                self.api.set_map(path, host, value)
                result += SyncResult(changed=1)
            elif value is None and live is not None:
                self.api.del_map(path, host)
                result += SyncResult(removed=1)
        return result

    def route_counters(self, ports: Iterable[int] | None = None) -> dict[int, RouteCounters]:
        """st_route as HAProxy holds it now, by tunnel port: every entry, or those of `ports`
        (one lookup each); counters the table does not keep read 0."""
        if ports is None:
            entries = self.api.show_table(ROUTE_TABLE)
        else:
            entries = {}
            for port in ports:
                entries |= self.api.show_table(ROUTE_TABLE, str(validate_port(port)))
        return {
            int(key): RouteCounters(
                current=entry.get("conn_cur", 0),
                connections=entry.get("conn_cnt", 0),
                bytes_in=entry.get("bytes_in_cnt", 0),
                bytes_out=entry.get("bytes_out_cnt", 0),
            )
            for key, entry in entries.items()
        }

    def install_certificate(self, pem: str) -> None:
        """Make `pem` (certificate, chain and key) the public host's: the file first, checked by
        OpenSSL before it replaces the old one (what a restart serves), then HAProxy's memory.
        If HAProxy is down this raises EdgeUnavailable with the file already right."""
        if self.cfg.public_host is None:
            raise ValueError("public_host: the edge serves no public host")
        write_atomic(self.cfg.public_pem, pem, PEM_MODE, check=_check_pem)
        self.api.set_ssl_cert(self.cfg.public_pem, pem)

    def served_serial(self) -> int:
        """The serial number of the public host's certificate HAProxy serves now."""
        return int(self.api.show_ssl_cert(self.cfg.public_pem)["Serial"], 16)

    def acme_responder(self, ready: bool) -> None:
        """Let the public host's ACME challenges reach the responder's socket, or stop them."""
        self.api.set_server_state(ACME_BACKEND, ACME_SERVER, "ready" if ready else "maint")

    def generation(self) -> str:
        """Names the running HAProxy worker; it changes when a restart or reload has emptied
        every stick table."""
        info = self.api.info()
        return f"{info['Pid']}:{info.get('Start_time_sec', '')}"

    def live_maps(self) -> dict[Scheme, dict[str, str]]:
        """The raw live route maps (host or public port -> value) as HAProxy matches them."""
        return {
            scheme: self.api.show_map(self.cfg.map_path(scheme))
            for scheme in SCHEMES
            if scheme in self.cfg.loaded_maps
        }

    def live_routes(self) -> list[Route]:
        """The routes HAProxy currently serves, sorted by scheme and key; a route with an
        allowlist reads `allow=("*",)` (its networks live in the allowlist maps)."""
        routes: list[Route] = []
        for scheme, entries in self.live_maps().items():
            for key, value in entries.items():
                found = _VALUE.fullmatch(value)
                if not found:
                    raise EdgeError(f"show map: {scheme} entry {key!r} has value {value!r}")
                port, allow, pp = (
                    int(found.group(1)),
                    ("*",) if found.group(2) else (),
                    bool(found.group(3)),
                )
                if scheme == "tcp":
                    routes.append(Route("", port, scheme, pp, public_port=int(key), allow=allow))
                else:
                    routes.append(Route(key, port, scheme, pp, allow=allow))
        return sorted(routes, key=lambda r: (r.scheme, r.host, r.public_port or 0))
