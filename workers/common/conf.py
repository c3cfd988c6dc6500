"""Typed environment helpers for both sites' settings: they fail loudly on bad values, and
read secrets from `<NAME>_FILE` when given, so no secret has to live in code or argv."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from workers.common.files import write_atomic
from workers.common.names import is_address, validate_hostname


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def env(name: str, default: str = "") -> str:
    file_var = os.environ.get(f"{name}_FILE")
    if file_var:
        try:
            return Path(file_var).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file_var}: {exc.strerror}") from exc
    return os.environ.get(name, default)


def envint(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name}: {value} is outside {minimum}..{maximum}")
    return value


def envbool(name: str, default: bool = False) -> bool:
    raw = env(name, "1" if default else "0").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name}: expected a boolean (1/0, true/false), got {raw!r}")


def envportrange(name: str) -> tuple[int, int] | None:
    """`first-last` (or one port) as (first, last); empty: None."""
    raw = env(name).strip()
    if not raw:
        return None
    first, sep, last = raw.partition("-")
    try:
        low, high = int(first), int(last if sep else first)
    except ValueError:
        raise ConfigError(f"{name}: expected a port range like 10000-10999, got {raw!r}") from None
    if not 1 <= low <= high <= 65535:
        raise ConfigError(f"{name}: {raw!r} is not a range of ports within 1..65535")
    return low, high


def envlist(name: str, default: str = "") -> list[str]:
    """A comma-separated list; blanks around items and empty items are dropped."""
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def _hostname(name: str, raw: str) -> str:
    try:
        return validate_hostname(raw, field=name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def envhostname(name: str) -> str | None:
    """A hostname (the one rule of workers.common.names), or None when unset."""
    raw = env(name).strip()
    return _hostname(name, raw) if raw else None


def envhost(name: str, default: str) -> str:
    """Where clients reach a site: a DNS name (the hostname rule, lower-cased), or `localhost`
    or an IP address (local runs); anything else is a ConfigError naming the variable."""
    raw = env(name, default).strip()
    if raw.lower() == "localhost" or is_address(raw):
        return raw.lower()
    return _hostname(name, raw)


def host_ports(name: str, default_port: int) -> list[tuple[str, int]]:
    """`ip[:port]` items (IPv6 as `[ip]:port`), comma separated, as (ip, port) pairs."""
    pairs = []
    for item in envlist(name):
        host, port = item, str(default_port)
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                port = rest.removeprefix(":")
        elif item.count(":") == 1:
            host, port = item.split(":")
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP address (ip or ip:port)") from None
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(f"{name}: {item!r} has no valid port (1..65535)")
        pairs.append((address, int(port)))
    return pairs


def state_dir(site: str) -> Path:
    """Everything the embedded defaults write lives here (README, Configuration)."""
    default = Path.home() / ".local" / "state" / "cloudathome" / site
    path = Path(env("CLOUDATHOME_STATE_DIR") or default).expanduser().resolve()
    # 0711: others may traverse (sshd reads a home's key file as that home's user; services
    # read the certificates) but not list; every secret inside is a 0600 file or a 0700
    # folder of its own. Explicit, so the umask (0077 in our processes) cannot narrow it.
    for folder in [*reversed(path.parents), path]:
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o711)
            folder.chmod(0o711)
    return path


def secret_key(state: Path) -> str:
    """CLOUDATHOME_SECRET_KEY, else one generated on first run and kept 0600 in the state dir."""
    given = env("CLOUDATHOME_SECRET_KEY")
    if given:
        return given
    path = state / "secret_key"
    if not path.exists():
        # link() never replaces: processes starting together all end up with the first key.
        with contextlib.suppress(FileExistsError):
            write_atomic(path, secrets.token_urlsafe(50), 0o600, replace=False)
    return path.read_text().strip()


def database(state: Path) -> dict[str, Any]:
    """DATABASE_URL (postgres://user:pass@host:port/name) selects PostgreSQL via psycopg 3;
    unset means SQLite in the state dir."""
    url = env("DATABASE_URL")
    if not url:
        sqlite = state / "db.sqlite3"
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(sqlite),
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ConfigError(f"DATABASE_URL: unsupported scheme {parts.scheme!r} (use postgres://)")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env("CLOUDATHOME_TEST_DATABASE") or None},
    }


def redis_url(state: Path) -> str:
    """REDIS_URL, else the private Redis that `up` starts on a unix socket in the state dir."""
    return env("REDIS_URL") or f"redis+socket://{state / 'redis.sock'}"
