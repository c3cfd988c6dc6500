"""`cloudathome home ...`: run the Home Console site in the foreground (web, Celery worker
+ beat, Flower, a private Redis when REDIS_URL is unset), prepare its state (what `up`
does before starting anything; containers run it as a one-shot), or a Django command of it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from workers.common.supervise import (
    Service,
    celery_services,
    console_service,
    django_manage,
    django_migrate,
    run_site,
    site_main,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "home.settings")


def manage(args: list[str]) -> int:
    return django_manage("home", args)


def site_prepare() -> str:
    """Check cloudlink.yaml (ConfigError names the file and the field), migrate, create the
    first administrator; return a line saying which cloud this home is linked to."""
    from django.conf import settings
    from django.core.management import call_command

    from home.cloudlink import config

    link = config.load(Path(settings.CLOUDLINK_CONFIG))
    django_migrate()
    call_command("ensure_admin")
    return f"linked to {link.cloudserver_url} as {link.home_slug}"


def _setup() -> str | None:
    """django.setup() and site_prepare(); None (after printing why) when it cannot start."""
    import django

    django.setup()
    from home.cloudlink import config

    try:
        return site_prepare()
    except config.ConfigError as exc:
        print(f"cloudathome home: {exc}", file=sys.stderr)
        return None


def prepare(args: list[str]) -> int:
    argparse.ArgumentParser(
        prog="cloudathome home prepare",
        description="Check cloudlink.yaml and prepare the database, then exit (what `up` does first).",
    ).parse_args(args)
    linked = _setup()
    if linked is None:
        return 2
    from django.conf import settings

    print(f"cloudathome home: prepared {settings.STATE_DIR}; {linked}", flush=True)
    return 0


def up(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cloudathome home up")
    parser.add_argument(
        "--allow-root",
        action="store_true",
        help="run as root anyway (the console needs no privilege; post-renewal actions never run as root)",
    )
    if os.geteuid() == 0 and not parser.parse_args(args).allow_root:
        print(
            "cloudathome home: refusing to run as root: the Home Console needs no privilege, "
            "and a console login must not be a root shell. Run it as an ordinary user (its "
            "own ssh, ports above 1024 and CLOUDATHOME_CERT_ROOT work as that user), or pass "
            "--allow-root.",
            file=sys.stderr,
        )
        return 2
    parser.parse_args(args)
    linked = _setup()
    if linked is None:
        return 2
    from django.conf import settings

    state = Path(settings.STATE_DIR)
    print(f"cloudathome home: state in {state}; {linked}", flush=True)

    def services(env: dict[str, str]) -> Iterator[Service]:
        yield console_service("home.wsgi", settings.HOME_BIND, settings.HOME_PORT, env)
        yield from celery_services("home", state, settings.FLOWER_BIND, settings.FLOWER_PORT, env)

    banner = (
        f"home console up: http://{settings.HOME_BIND}:{settings.HOME_PORT}/  "
        f"flower http://{settings.FLOWER_BIND}:{settings.FLOWER_PORT}/  (Ctrl-C stops; tunnels keep running)"
    )
    return run_site("home", state, settings.REDIS_URL, services, banner)


def main(argv: list[str]) -> int:
    return site_main("home", argv, {"up": up, "prepare": prepare, "manage": manage})
