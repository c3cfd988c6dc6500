"""The Django settings both sites share, written once: each site's settings module starts from
these (`from workers.common.settings import *`) and adds its apps, URLs, state and listeners."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from workers.common.conf import env, envbool, envint

__all__ = [
    "AUTHENTICATION_BACKENDS",
    "AUTH_PASSWORD_VALIDATORS",
    "AXES_COOLOFF_TIME",
    "AXES_DISABLE_ACCESS_LOG",
    "AXES_FAILURE_LIMIT",
    "AXES_LOCKOUT_CALLABLE",
    "AXES_LOCKOUT_PARAMETERS",
    "AXES_RESET_ON_SUCCESS",
    "AXES_VERBOSE",
    "CSRF_COOKIE_SECURE",
    "CSRF_TRUSTED_ORIGINS",
    "DEBUG",
    "DEFAULT_AUTO_FIELD",
    "LANGUAGE_CODE",
    "LOGGING",
    "LOGIN_REDIRECT_URL",
    "LOGIN_URL",
    "LOGOUT_REDIRECT_URL",
    "METRICS_TOKEN",
    "MIDDLEWARE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SECURE",
    "STATIC_URL",
    "STORAGES",
    "TIME_ZONE",
    "USE_I18N",
    "USE_TZ",
    "WHITENOISE_USE_FINDERS",
]

DEBUG = envbool("CLOUDATHOME_DEBUG")
# The bearer token a scraper sends for /metrics (workers.common.metrics); without one, only
# loopback clients that reach the site directly may read it.
METRICS_TOKEN = env("CLOUDATHOME_METRICS_TOKEN")
CSRF_TRUSTED_ORIGINS = [o for o in env("CLOUDATHOME_CSRF_TRUSTED_ORIGINS").split(",") if o]

# Django's own apps, the API library and the shared look come before each site's apps.
SHARED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "workers.common.ui",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Password guessing (issue 11), throttled by django-axes per username and per client address:
# the 10th failure locks either out for 15 minutes. Each site says where the address comes
# from (AXES_CLIENT_IP_CALLABLE); the 429's shape is workers.common.throttle's.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = envint("CLOUDATHOME_LOGIN_FAILURES", 10, 1)
AXES_COOLOFF_TIME = timedelta(seconds=envint("CLOUDATHOME_LOGIN_COOLOFF", 900, 1))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "workers.common.throttle.lockout_response"
AXES_VERBOSE = False
# Failures are what throttling needs; a row per successful login would only grow.
AXES_DISABLE_ACCESS_LOG = True


def templates(directory: Path) -> list[dict[str, Any]]:
    """Django templates from a site's own `directory`, then every app's, with the shared
    context (the site's name for the layout)."""
    return [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [directory],
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


def allowed_hosts(default: str) -> list[str]:
    """CLOUDATHOME_ALLOWED_HOSTS (comma-separated), else `default`."""
    return [h for h in env("CLOUDATHOME_ALLOWED_HOSTS", default).split(",") if h]


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
SESSION_COOKIE_HTTPONLY = True
# Off by default since both sites answer plain HTTP on loopback; on behind TLS.
SESSION_COOKIE_SECURE = envbool("CLOUDATHOME_SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("CLOUDATHOME_LOG_LEVEL", "INFO")},
}
