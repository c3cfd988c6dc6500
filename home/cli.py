"""`cloudathome home ...`: run the Home Console site in the foreground (web, Celery worker
+ beat, Flower, a private Redis when REDIS_URL is unset), or a Django command of it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from workers.supervise import (
    Service,
    celery_services,
    django_manage,
    run_site,
    site_main,
    web_service,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "home.settings")


def manage(args: list[str]) -> int:
    return django_manage("home", args)


def up(args: list[str]) -> int:
    argparse.ArgumentParser(prog="cloudathome home up").parse_args(args)
    import django

    django.setup()
    from django.conf import settings

    from home.cloudlink import config

    try:
        link = config.load(Path(settings.CLOUDLINK_CONFIG))
    except config.ConfigError as exc:
        print(f"cloudathome home: {exc}", file=sys.stderr)
        return 2
    state = Path(settings.STATE_DIR)
    print(
        f"cloudathome home: state in {state}; linked to {link.cloudserver_url} as {link.home_slug}",
        flush=True,
    )

    def services(env: dict[str, str]) -> Iterator[Service]:
        yield web_service("home.wsgi", settings.HOME_BIND, settings.HOME_PORT, env)
        yield from celery_services("home", state, settings.FLOWER_PORT, env)

    banner = (
        f"home console up: http://{settings.HOME_BIND}:{settings.HOME_PORT}/  "
        f"flower http://127.0.0.1:{settings.FLOWER_PORT}/  (Ctrl-C stops; tunnels keep running)"
    )
    return run_site("home", state, settings.REDIS_URL, services, banner)


def main(argv: list[str]) -> int:
    return site_main("home", argv, up, manage)
