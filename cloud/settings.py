"""Settings of the cloud site, from environment variables with defaults that work on one
machine (README, Configuration). Every value the embedded defaults write lands in the state dir."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from workers.common import acme
from workers.common.conf import (
    ConfigError,
    database,
    env,
    envbool,
    envhost,
    envhostname,
    envint,
    envlist,
    envportrange,
    host_ports,
    redis_url,
    secret_key,
    state_dir,
)
from workers.common.names import is_address

# Django reads settings as module globals: the shared base is star-imported (its __all__ lists
# what it exports) and the names used below are imported by name as well.
from workers.common.settings import *  # noqa: F403
from workers.common.settings import (
    CSRF_TRUSTED_ORIGINS,
    SESSION_COOKIE_SECURE,
    SHARED_APPS,
    allowed_hosts,
    cookie_names,
    hsts_seconds,
    templates,
)
from workers.common.settings import MIDDLEWARE as SHARED_MIDDLEWARE

BASE_DIR = Path(__file__).resolve().parent
SITE_NAME = "cloudathome cloud"
STATE_DIR = state_dir("cloud")

SECRET_KEY = secret_key(STATE_DIR)
# The name homes and browsers reach the cloud at. A DNS name is served on HTTPS_PORT too: HAProxy
# ends TLS for it with a certificate the cloud obtains and renews itself (HTTP-01 on HTTP_PORT,
# cloud.edge.certificate); `localhost` or an address (local runs) leave the control plane on
# WEB_PORT only.
PUBLIC_HOST = envhost("CLOUDATHOME_PUBLIC_HOST", "localhost")
PUBLIC_TLS = PUBLIC_HOST != "localhost" and not is_address(PUBLIC_HOST)
ALLOWED_HOSTS = allowed_hosts(f"{PUBLIC_HOST},localhost,127.0.0.1")
if PUBLIC_TLS:
    CSRF_TRUSTED_ORIGINS = [*CSRF_TRUSTED_ORIGINS, f"https://{PUBLIC_HOST}"]
# HAProxy sets X-Forwarded-Proto on every request (https where it ended TLS, else http) and
# only HAProxy reaches gunicorn's socket: the one source Django takes the scheme from.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = hsts_seconds(SESSION_COOKIE_SECURE or PUBLIC_TLS)
# The public host's certificate: the CA and the renewal window are shared settings.
ACME_ACCOUNT_KEY = STATE_DIR / "acme" / "account.key"
try:
    ACME_EMAIL = acme.validate_email(env("CLOUDATHOME_ACME_EMAIL"))
except ValueError as exc:
    raise ConfigError(f"CLOUDATHOME_ACME_EMAIL: {str(exc).removeprefix('email: ')}") from None

INSTALLED_APPS = [
    *SHARED_APPS,
    "cloud.accounts",
    "cloud.homes",
    "cloud.edge",
    "cloud.domains",
    "cloud.traffic",
]

# Pages get a failing dependency (the task queue) as a 503 page, not a 500 (workers.common.ui).
MIDDLEWARE = [*SHARED_MIDDLEWARE, "workers.common.ui.errors.ErrorPageMiddleware"]

ROOT_URLCONF = "cloud.urls"
WSGI_APPLICATION = "cloud.wsgi.application"
TEMPLATES = templates(BASE_DIR / "templates")

DATABASES = {"default": database(STATE_DIR)}
STATIC_ROOT = STATE_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
SESSION_COOKIE_NAME, CSRF_COOKIE_NAME = cookie_names("cloud")

# Celery: the cloud's own broker (docs/architecture.md).
REDIS_URL = redis_url(STATE_DIR)

# Listeners (README, Configuration).
WEB_PORT = envint("CLOUDATHOME_WEB_PORT", 8000, 1, 65535)
WEB_BIND = env("CLOUDATHOME_WEB_BIND", "0.0.0.0")  # noqa: S104 - the control plane is public
HTTPS_PORT = envint("CLOUDATHOME_HTTPS_PORT", 443, 1, 65535)
HTTP_PORT = envint("CLOUDATHOME_HTTP_PORT", 80, 1, 65535)
EDGE_BIND = env("CLOUDATHOME_EDGE_BIND", "0.0.0.0")  # noqa: S104
SSH_PORT = envint("CLOUDATHOME_SSH_PORT", 8022, 1, 65535)
SSH_BIND = env("CLOUDATHOME_SSH_BIND", "0.0.0.0")  # noqa: S104
FLOWER_PORT = envint("CLOUDATHOME_FLOWER_PORT", 5555, 1, 65535)
# Flower has no login of its own: loopback only unless you put it behind an authenticating proxy.
FLOWER_BIND = env("CLOUDATHOME_FLOWER_BIND", "127.0.0.1")

# Traffic per route: the edge counts connections and bytes per tunnel port, a beat
# task samples them this often for the charts of the last hour.
EDGE_TRAFFIC_COUNTERS = envbool("CLOUDATHOME_EDGE_TRAFFIC_COUNTERS", True)
TRAFFIC_SAMPLE_SECONDS = envint("CLOUDATHOME_TRAFFIC_SAMPLE_SECONDS", 60, 1, 600)

# Home slots and their port ranges (docs/architecture.md).
HOME_SLOTS = envint("CLOUDATHOME_HOME_SLOTS", 10, 1, 10000)
PORT_BASE = envint("CLOUDATHOME_PORT_BASE", 2000, 1024, 65535)
PORT_STRIDE = envint("CLOUDATHOME_PORT_STRIDE", 100, 1, 65535)
PORTS_PER_HOME = envint("CLOUDATHOME_PORTS_PER_HOME", 10, 1, 1000)

# Raw TCP mappings: the public ports the edge gives out (`10000-10999`; empty: none) and how
# many one home may hold. They must not meet any other listener of the site (checked here).
TCP_PORTS = envportrange("CLOUDATHOME_TCP_PORTS")
TCP_PORTS_PER_HOME = envint("CLOUDATHOME_TCP_PORTS_PER_HOME", 5, 0, 65535)
if TCP_PORTS is not None:
    _tunnels = (PORT_BASE, PORT_BASE + (HOME_SLOTS - 1) * PORT_STRIDE + PORTS_PER_HOME - 1)
    if TCP_PORTS[0] <= _tunnels[1] and _tunnels[0] <= TCP_PORTS[1]:
        raise ConfigError(
            f"CLOUDATHOME_TCP_PORTS: {TCP_PORTS[0]}-{TCP_PORTS[1]} overlaps the homes' tunnel"
            f" ports {_tunnels[0]}-{_tunnels[1]} (CLOUDATHOME_PORT_BASE, _STRIDE, _HOME_SLOTS)"
        )
    for _name, _port in (
        ("CLOUDATHOME_HTTPS_PORT", HTTPS_PORT),
        ("CLOUDATHOME_HTTP_PORT", HTTP_PORT),
        ("CLOUDATHOME_WEB_PORT", WEB_PORT),
        ("CLOUDATHOME_SSH_PORT", SSH_PORT),
        ("CLOUDATHOME_FLOWER_PORT", FLOWER_PORT),
    ):
        if TCP_PORTS[0] <= _port <= TCP_PORTS[1]:
            raise ConfigError(
                f"CLOUDATHOME_TCP_PORTS: {TCP_PORTS[0]}-{TCP_PORTS[1]} includes {_name} {_port}"
            )

# SSH identities: a system user per home when root, one keys file otherwise.
SSH_MODE = env("CLOUDATHOME_SSH_MODE", "system-users" if os.geteuid() == 0 else "single-account")
SSH_ACCOUNT = env("CLOUDATHOME_SSH_ACCOUNT", getpass.getuser())
SSH_USER_PREFIX = env("CLOUDATHOME_SSH_USER_PREFIX", "home")

# --- Floods: what one client may take of the edge, the SSH endpoint and the
# control plane. The defaults live beside the code that applies them (cloud.edge).
from cloud.edge.haproxy import EdgeLimits as _Edge  # noqa: E402
from cloud.edge.sshd import SshdConfig as _Sshd  # noqa: E402

EDGE_MAXCONN = envint("CLOUDATHOME_EDGE_MAXCONN", 20000, 1)
EDGE_LIMITS = _Edge(
    source_conn=envint("CLOUDATHOME_EDGE_SOURCE_CONN", _Edge.source_conn, 1),
    source_rate=envint("CLOUDATHOME_EDGE_SOURCE_RATE", _Edge.source_rate, 1),
    route_conn=envint("CLOUDATHOME_EDGE_ROUTE_CONN", _Edge.route_conn, 1),
    hello_timeout_s=envint("CLOUDATHOME_EDGE_HELLO_TIMEOUT", _Edge.hello_timeout_s, 1, 60),
    request_timeout_s=envint("CLOUDATHOME_EDGE_REQUEST_TIMEOUT", _Edge.request_timeout_s, 1, 300),
    idle_timeout_s=envint("CLOUDATHOME_EDGE_IDLE_TIMEOUT", _Edge.idle_timeout_s, 1, 86400),
    web_source_conn=envint("CLOUDATHOME_WEB_SOURCE_CONN", _Edge.web_source_conn, 1),
    web_source_rate=envint("CLOUDATHOME_WEB_SOURCE_RATE", _Edge.web_source_rate, 1),
    signup_rate=envint("CLOUDATHOME_SIGNUP_RATE", _Edge.signup_rate, 1),
)
SSH_SOURCE_STARTUPS = envint("CLOUDATHOME_SSH_SOURCE_STARTUPS", _Sshd.source_startups, 1)
SSH_LOGIN_GRACE = envint("CLOUDATHOME_SSH_LOGIN_GRACE", _Sshd.login_grace_s, 1, 600)
SSH_MAX_STARTUPS = envint("CLOUDATHOME_SSH_MAX_STARTUPS", _Sshd.max_startups, 2)
# Twice the tunnels a home can open: its stale sessions linger ~16 s after a network blip.
SSH_HOME_SESSIONS = envint("CLOUDATHOME_SSH_HOME_SESSIONS", 2 * PORTS_PER_HOME, 1)
# --- end Floods

# Only HAProxy reaches gunicorn (a unix socket): the client address is the one it forwards.
AXES_CLIENT_IP_CALLABLE = "workers.common.throttle.client_behind_haproxy"
# Names homes may publish (docs/architecture.md): one label per home under the base domain (one
# wildcard DNS record), custom domains proven by a TXT record looked up on these resolvers
# (`host:port`, comma separated; empty: the system's), and names nobody may own.
BASE_DOMAIN = envhostname("CLOUDATHOME_BASE_DOMAIN")
DNS_RESOLVERS = host_ports("CLOUDATHOME_DNS_RESOLVERS", default_port=53)
RESERVED_NAMES = envlist("CLOUDATHOME_RESERVED_NAMES")
