"""The Django settings both sites share, written once: each site's settings module starts from
these (`from workers.common.settings import *`) and adds its apps, URLs, state and listeners."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from csp.constants import NONE, SELF, UNSAFE_INLINE

from workers.common.conf import env, envbool, envint

__all__ = [
    "ACME_CA_BUNDLE",
    "ACME_DIRECTORY",
    "AUTHENTICATION_BACKENDS",
    "AUTH_PASSWORD_VALIDATORS",
    "AXES_COOLOFF_TIME",
    "AXES_DISABLE_ACCESS_LOG",
    "AXES_FAILURE_LIMIT",
    "AXES_LOCKOUT_CALLABLE",
    "AXES_LOCKOUT_PARAMETERS",
    "AXES_RESET_ON_SUCCESS",
    "AXES_VERBOSE",
    "CONTENT_SECURITY_POLICY",
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
    "RENEW_DAYS",
    "RENEW_MIN_AGE",
    "SECURE_HSTS_SECONDS",
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
    "csp",
    "workers.common.ui",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside the ones that set cookies, so it sees every cookie of a response.
    "workers.common.https.SecureCookiesOverHttps",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "workers.common.api.RejectNul",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Password guessing, throttled by django-axes per username and per client address:
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
# Off by default since both sites answer plain HTTP on loopback; on behind TLS, with HSTS.
# A response to a request that came over HTTPS marks its cookies Secure whatever this says
# (workers.common.https): the cloud serves its public host so itself.
SESSION_COOKIE_SECURE = envbool("CLOUDATHOME_SECURE_COOKIES")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE


def hsts_seconds(over_https: bool) -> int:
    """HSTS max-age of a site served over HTTPS: a year (no preload: the operator's domain
    list is theirs to submit). Django sends it on secure requests only."""
    return 31536000 if over_https else 0


SECURE_HSTS_SECONDS = hsts_seconds(SESSION_COOKIE_SECURE)


# Certificates from an ACME CA: the home's for its domains, the cloud's for its public host.
ACME_DIRECTORY = env("CLOUDATHOME_ACME_DIRECTORY", "https://acme-v02.api.letsencrypt.org/directory")
ACME_CA_BUNDLE = env("CLOUDATHOME_ACME_CA_BUNDLE") or None
# Renewed this many days before expiry, but never younger than RENEW_MIN_AGE seconds: a
# misconfigured window must not hammer the CA's rate limits.
RENEW_DAYS = envint("CLOUDATHOME_RENEW_DAYS", 30, 0, 36500)
RENEW_MIN_AGE = envint("CLOUDATHOME_RENEW_MIN_AGE", 86400, 0)


def cookie_names(site: str) -> tuple[str, str]:
    """The session and CSRF cookie names of a site: browsers keep cookies per host, not per
    port, so two sites on one host with Django's default names log each other out."""
    return f"cah_{site}_session", f"cah_{site}_csrftoken"


# The pages' Content-Security-Policy (django-csp): scripts only from our own static files,
# never inline, so injected markup cannot run; styles may be inline (Django admin, Swagger UI
# and ReDoc set them), which runs no code; ReDoc builds its search worker from a blob.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

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
