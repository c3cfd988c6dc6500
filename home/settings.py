"""Settings of the Home Console site, from environment variables with defaults that work
on one machine (README, Configuration). `cloudlink.yaml` is loaded (and checked) at start-up."""

from __future__ import annotations

from pathlib import Path

from home.certs.actions import parse_actions
from workers.common.conf import (
    ConfigError,
    database,
    env,
    envint,
    redis_url,
    secret_key,
    state_dir,
)

# Django reads settings as module globals: the shared base is star-imported (its __all__ lists
# what it exports) and the names used below are imported by name as well.
from workers.common.settings import *  # noqa: F403
from workers.common.settings import MIDDLEWARE as SHARED_MIDDLEWARE
from workers.common.settings import SHARED_APPS, allowed_hosts, cookie_names, templates

BASE_DIR = Path(__file__).resolve().parent
SITE_NAME = "Home Console"
STATE_DIR = state_dir("home")

SECRET_KEY = secret_key(STATE_DIR)
ALLOWED_HOSTS = allowed_hosts("localhost,127.0.0.1")

INSTALLED_APPS = [
    *SHARED_APPS,
    "home.accounts",
    "home.cloudlink",
    "home.certs",
    "home.tunnels",
    "home.traffic",
]

# Pages get the reasons of a failing dependency as a 503 page, not a 500 (home.errors).
MIDDLEWARE = [*SHARED_MIDDLEWARE, "home.errors.ErrorPageMiddleware"]

ROOT_URLCONF = "home.urls"
WSGI_APPLICATION = "home.wsgi.application"
TEMPLATES = templates(BASE_DIR / "templates")

DATABASES = {"default": database(STATE_DIR)}
STATIC_ROOT = STATE_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
SESSION_COOKIE_NAME, CSRF_COOKIE_NAME = cookie_names("home")

REDIS_URL = redis_url(STATE_DIR)
HOME_PORT = envint("CLOUDATHOME_HOME_PORT", 8001, 1, 65535)
HOME_BIND = env("CLOUDATHOME_HOME_BIND", "127.0.0.1")
FLOWER_PORT = envint("CLOUDATHOME_FLOWER_PORT", 5556, 1, 65535)
# Flower has no login of its own: loopback only unless you put it behind an authenticating proxy.
FLOWER_BIND = env("CLOUDATHOME_FLOWER_BIND", "127.0.0.1")

# cloudlink.yaml: written by `cloudathome register` (README, Configuration).
CLOUDLINK_CONFIG = Path(
    env("CLOUDLINK_CONFIG") or (BASE_DIR / "config" / "cloudlink.yaml")
).expanduser()

# Tunnels: supervisor period (beat) and log folder.
TUNNEL_SUPERVISE_SECONDS = envint("CLOUDATHOME_TUNNEL_SUPERVISE_SECONDS", 3, 1, 3600)
TUNNEL_LOG_DIR = STATE_DIR / "tunnels"

# Certificates (README, Configuration; the CA and the renewal window are shared settings).
ACME_ACCOUNT_KEY = STATE_DIR / "acme" / "account.key"
# Every domain's certificate folder is this root or below it (resolved once, here).
CERT_ROOT = Path(env("CLOUDATHOME_CERT_ROOT") or STATE_DIR / "certs").expanduser()
if not CERT_ROOT.is_absolute():
    raise ConfigError(f"CLOUDATHOME_CERT_ROOT: must be an absolute path, not {str(CERT_ROOT)!r}")
CERT_ROOT = CERT_ROOT.resolve()
# What may run after a renewal: the operator's named argument vectors, never a web request's.
POST_RENEW_ACTIONS = parse_actions(env("CLOUDATHOME_POST_RENEW_ACTIONS"))
POST_RENEW_TIMEOUT = envint("CLOUDATHOME_POST_RENEW_TIMEOUT", 60, 1, 600)

# The link check (cloud API, token, SSH preflight) behind the dashboard and /api/status.
LINK_CHECK_SECONDS = envint("CLOUDATHOME_LINK_CHECK_SECONDS", 60, 5, 86400)

# How often the worker asks the cloud what its edge counted for each tunnel (the pages' traffic).
TRAFFIC_REFRESH_SECONDS = envint("CLOUDATHOME_TRAFFIC_REFRESH_SECONDS", 60, 1, 3600)

# The console faces its clients itself (127.0.0.1 by default): REMOTE_ADDR is theirs.
AXES_CLIENT_IP_CALLABLE = "workers.common.throttle.client_address"
