"""The typed environment helpers (workers.common.conf): values, defaults, `<NAME>_FILE`
secrets, and a loud ConfigError naming the variable for anything malformed."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from workers.common.conf import (
    ConfigError,
    database,
    env,
    envbool,
    envhost,
    envhostname,
    envint,
    envlist,
    host_ports,
    redis_url,
    secret_key,
    state_dir,
)


def test_env_reads_the_variable_or_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAH_T_NAME", "value")
    monkeypatch.delenv("CAH_T_MISSING", raising=False)
    assert env("CAH_T_NAME") == "value"
    assert env("CAH_T_MISSING", "fallback") == "fallback"


def test_a_secret_comes_from_its_file_before_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    monkeypatch.setenv("CAH_T_SECRET", "from-env")
    monkeypatch.setenv("CAH_T_SECRET_FILE", str(secret))
    assert env("CAH_T_SECRET") == "from-file"


def test_an_unreadable_secret_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CAH_T_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"^CAH_T_SECRET_FILE: cannot read .*absent"):
        env("CAH_T_SECRET")


@pytest.mark.parametrize(("raw", "expected"), [("8080", 8080), ("1", 1), ("65535", 65535)])
def test_envint_accepts_integers_within_bounds(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    monkeypatch.setenv("CAH_T_PORT", raw)
    assert envint("CAH_T_PORT", 80, 1, 65535) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("http", "expected an integer, got 'http'"),
        ("0", "0 is outside 1..65535"),
        ("70000", "outside"),
    ],
)
def test_envint_refuses_what_is_not_an_integer_within_bounds(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("CAH_T_PORT", raw)
    with pytest.raises(ConfigError, match=rf"^CAH_T_PORT: .*{message}"):
        envint("CAH_T_PORT", 80, 1, 65535)


def test_envint_default_applies_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAH_T_PORT", raising=False)
    assert envint("CAH_T_PORT", 8000, 1, 65535) == 8000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("off", False),
        ("", False),
    ],
)
def test_envbool_reads_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("CAH_T_FLAG", raw)
    assert envbool("CAH_T_FLAG", default=not expected) is expected


def test_envbool_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAH_T_FLAG", "maybe")
    with pytest.raises(ConfigError, match=r"^CAH_T_FLAG: expected a boolean"):
        envbool("CAH_T_FLAG")


def test_state_dir_is_created_0711(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLOUDATHOME_STATE_DIR", str(tmp_path / "a" / "state"))
    path = state_dir("cloud")
    assert path == (tmp_path / "a" / "state").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o711


def test_the_secret_key_is_generated_once_0600_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CLOUDATHOME_SECRET_KEY", raising=False)
    monkeypatch.delenv("CLOUDATHOME_SECRET_KEY_FILE", raising=False)
    first = secret_key(tmp_path)
    assert len(first) >= 50
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert secret_key(tmp_path) == first


def test_processes_starting_together_agree_on_one_secret_key(tmp_path: Path) -> None:
    script = "import sys; from pathlib import Path; from workers.common.conf import secret_key; print(secret_key(Path(sys.argv[1])))"
    env_vars = {"PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_vars,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert len({out.strip() for out, _ in outputs}) == 1


def test_a_given_secret_key_is_used_as_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLOUDATHOME_SECRET_KEY", "given")
    assert secret_key(tmp_path) == "given"
    assert not (tmp_path / "secret_key").exists()


def test_without_database_url_the_database_is_sqlite_in_the_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    db = database(tmp_path)
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(tmp_path / "db.sqlite3")


def test_database_url_selects_postgresql_with_every_part(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "DATABASE_URL", "postgres://us%40er:p%2Fss@db.example:6543/cah?sslmode=require"
    )
    db = database(tmp_path)
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"]) == (
        "django.db.backends.postgresql",
        "cah",
        "us@er",
        "p/ss",
    )
    assert (db["HOST"], db["PORT"], db["OPTIONS"]) == ("db.example", "6543", {"sslmode": "require"})


def test_an_unknown_database_scheme_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(ConfigError, match=r"^DATABASE_URL: unsupported scheme 'mysql'"):
        database(tmp_path)


def test_redis_url_or_the_private_socket_in_the_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert redis_url(tmp_path) == f"redis+socket://{tmp_path / 'redis.sock'}"
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    assert redis_url(tmp_path) == "redis://127.0.0.1:6379/3"


def test_envlist_drops_blanks_and_empty_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAH_T_LIST", " a.example , ,b.example,")
    assert envlist("CAH_T_LIST") == ["a.example", "b.example"]
    monkeypatch.delenv("CAH_T_LIST")
    assert envlist("CAH_T_LIST") == []


def test_envhostname_is_the_one_hostname_rule_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAH_T_HOST", raising=False)
    assert envhostname("CAH_T_HOST") is None
    monkeypatch.setenv("CAH_T_HOST", "Homes.Example.COM.")
    assert envhostname("CAH_T_HOST") == "homes.example.com"
    monkeypatch.setenv("CAH_T_HOST", "homes")
    with pytest.raises(ConfigError, match=r"^CAH_T_HOST: needs at least two labels"):
        envhostname("CAH_T_HOST")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Cloud.Example.COM", "cloud.example.com"),
        ("LOCALHOST", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        (None, "localhost"),
    ],
)
def test_envhost_takes_a_dns_name_localhost_or_an_address(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: str
) -> None:
    if raw is None:
        monkeypatch.delenv("CAH_T_HOST", raising=False)
    else:
        monkeypatch.setenv("CAH_T_HOST", raw)
    assert envhost("CAH_T_HOST", "localhost") == expected


def test_envhost_refuses_anything_else_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAH_T_HOST", "https://cloud.example.com/")
    with pytest.raises(ConfigError, match=r"^CAH_T_HOST: label 'https://cloud' may only contain"):
        envhost("CAH_T_HOST", "localhost")


def test_host_ports_reads_addresses_with_an_optional_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAH_T_DNS", "127.0.0.1:8053, 10.0.0.1,[::1]:5353,[2001:db8::1]")
    assert host_ports("CAH_T_DNS", default_port=53) == [
        ("127.0.0.1", 8053),
        ("10.0.0.1", 53),
        ("::1", 5353),
        ("2001:db8::1", 53),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("dns.example:53", "'dns.example:53' is not an IP address"),
        ("127.0.0.1:http", "'127.0.0.1:http' has no valid port"),
        ("127.0.0.1:70000", "'127.0.0.1:70000' has no valid port"),
        ("[::1]:0", r"'\[::1\]:0' has no valid port"),
    ],
)
def test_host_ports_refuses_names_and_bad_ports_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("CAH_T_DNS", raw)
    with pytest.raises(ConfigError, match=rf"^CAH_T_DNS: {message}"):
        host_ports("CAH_T_DNS", default_port=53)
