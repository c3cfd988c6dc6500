"""Settings of the Home Console site, from environment variables with defaults that work
on one machine (DESIGN section 6). `cloudlink.yaml` is loaded (and checked) at start-up."""

from __future__ import annotations

from pathlib import Path

from home.certs.actions import parse_actions
from workers.common.conf import (
    ConfigError,
    database,
    env,
    envbool,
    envint,
    redis_url,
    secret_key,
    state_dir,
)
from workers.common.ui import csp

BASE_DIR = Path(__file__).resolve().parent
SITE_NAME = "Home Console"
STATE_DIR = state_dir("home")

SECRET_KEY = secret_key(STATE_DIR)
DEBUG = envbool("CLOUDATHOME_DEBUG")
ALLOWED_HOSTS = [h for h in env("CLOUDATHOME_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in env("CLOUDATHOME_CSRF_TRUSTED_ORIGINS").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "csp",
    "workers.common.ui",
    "home.accounts",
    "home.cloudlink",
    "home.certs",
    "home.tunnels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "workers.common.api.RejectNul",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "home.errors.ErrorPageMiddleware",
]

ROOT_URLCONF = "home.urls"
WSGI_APPLICATION = "home.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "workers.common.ui.context.site",
            ]
        },
    }
]

DATABASES = {"default": database(STATE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# Cookies of this site's own (two sites on one host must not log each other out), Secure
# and HSTS when served over HTTPS (CLOUDATHOME_SECURE_COOKIES); scripts only from our files.
SESSION_COOKIE_NAME = "cah_home_session"
CSRF_COOKIE_NAME = "cah_home_csrftoken"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("CLOUDATHOME_SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = 31536000 if SESSION_COOKIE_SECURE else 0
CONTENT_SECURITY_POLICY = csp.CONTENT_SECURITY_POLICY
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = STATE_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("CLOUDATHOME_LOG_LEVEL", "INFO")},
}

REDIS_URL = redis_url(STATE_DIR)
HOME_PORT = envint("CLOUDATHOME_HOME_PORT", 8001, 1, 65535)
HOME_BIND = env("CLOUDATHOME_HOME_BIND", "127.0.0.1")
FLOWER_PORT = envint("CLOUDATHOME_FLOWER_PORT", 5556, 1, 65535)
# Flower has no login of its own: loopback only unless you put it behind an authenticating proxy.
FLOWER_BIND = env("CLOUDATHOME_FLOWER_BIND", "127.0.0.1")

# cloudlink.yaml: written by `cloudathome register` (DESIGN section 5).
CLOUDLINK_CONFIG = Path(
    env("CLOUDLINK_CONFIG") or (BASE_DIR / "config" / "cloudlink.yaml")
).expanduser()

# Tunnels: supervisor period (beat) and log folder.
TUNNEL_SUPERVISE_SECONDS = envint("CLOUDATHOME_TUNNEL_SUPERVISE_SECONDS", 3, 1, 3600)
TUNNEL_LOG_DIR = STATE_DIR / "tunnels"

# Certificates (DESIGN section 6).
ACME_DIRECTORY = env("CLOUDATHOME_ACME_DIRECTORY", "https://acme-v02.api.letsencrypt.org/directory")
ACME_CA_BUNDLE = env("CLOUDATHOME_ACME_CA_BUNDLE") or None
ACME_ACCOUNT_KEY = STATE_DIR / "acme" / "account.key"
RENEW_DAYS = envint("CLOUDATHOME_RENEW_DAYS", 30, 0, 36500)
RENEW_MIN_AGE = envint("CLOUDATHOME_RENEW_MIN_AGE", 86400, 0)
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
