"""Settings of the cloud site, from environment variables with defaults that work on one
machine (DESIGN section 6). Every value the embedded defaults write lands in the state dir."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from workers.common.conf import database, env, envbool, envint, redis_url, secret_key, state_dir
from workers.common.ui import csp

BASE_DIR = Path(__file__).resolve().parent
SITE_NAME = "cloudathome cloud"
STATE_DIR = state_dir("cloud")

SECRET_KEY = secret_key(STATE_DIR)
DEBUG = envbool("CLOUDATHOME_DEBUG")
PUBLIC_HOST = env("CLOUDATHOME_PUBLIC_HOST", "localhost")
ALLOWED_HOSTS = [
    h
    for h in env("CLOUDATHOME_ALLOWED_HOSTS", f"{PUBLIC_HOST},localhost,127.0.0.1").split(",")
    if h
]
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
    "cloud.accounts",
    "cloud.homes",
    "cloud.edge",
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
]

ROOT_URLCONF = "cloud.urls"
WSGI_APPLICATION = "cloud.wsgi.application"
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
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# Cookies of this site's own (two sites on one host must not log each other out), Secure
# and HSTS when served over HTTPS (CLOUDATHOME_SECURE_COOKIES); scripts only from our files.
SESSION_COOKIE_NAME = "cah_cloud_session"
CSRF_COOKIE_NAME = "cah_cloud_csrftoken"
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
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("CLOUDATHOME_LOG_LEVEL", "INFO")},
}

# Celery: the cloud's own broker (DESIGN section 1).
REDIS_URL = redis_url(STATE_DIR)

# Listeners (DESIGN section 6).
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

# Home slots and their port ranges (DESIGN section 4).
HOME_SLOTS = envint("CLOUDATHOME_HOME_SLOTS", 10, 1, 10000)
PORT_BASE = envint("CLOUDATHOME_PORT_BASE", 2000, 1024, 65535)
PORT_STRIDE = envint("CLOUDATHOME_PORT_STRIDE", 100, 1, 65535)
PORTS_PER_HOME = envint("CLOUDATHOME_PORTS_PER_HOME", 10, 1, 1000)

# SSH identities: a system user per home when root, one keys file otherwise.
SSH_MODE = env("CLOUDATHOME_SSH_MODE", "system-users" if os.geteuid() == 0 else "single-account")
SSH_ACCOUNT = env("CLOUDATHOME_SSH_ACCOUNT", getpass.getuser())
SSH_USER_PREFIX = env("CLOUDATHOME_SSH_USER_PREFIX", "home")
