"""`cloudathome home ...`: run the Home Console site in the foreground (web, Celery worker
+ beat, Flower, a private Redis when REDIS_URL is unset), or a Django command of it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from workers.supervise import django_manage, site_main

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "home.settings")


def manage(args: list[str]) -> int:
    return django_manage("home", args)


def up(args: list[str]) -> int:
    argparse.ArgumentParser(prog="cloudathome home up").parse_args(args)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from home.cloudlink import config
    from workers.supervise import Supervisor, celery_services, redis_service, web_service

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
    call_command("migrate", interactive=False, verbosity=0)
    call_command("ensure_admin")
    env = dict(os.environ, CLOUDATHOME_STATE_DIR=str(state), REDIS_URL=settings.REDIS_URL)
    sup = Supervisor(state / "logs")
    try:
        if not os.environ.get("REDIS_URL"):
            sup.start(redis_service(state))
        sup.start(web_service("home.wsgi", settings.HOME_BIND, settings.HOME_PORT, env))
        for service in celery_services("home", state, settings.FLOWER_PORT, env):
            sup.start(service)
    except Exception as exc:
        sup.stop()
        print(f"cloudathome home: {exc}", file=sys.stderr)
        return 1
    print(
        f"home console up: http://{settings.HOME_BIND}:{settings.HOME_PORT}/  "
        f"flower http://127.0.0.1:{settings.FLOWER_PORT}/  (Ctrl-C stops; tunnels keep running)",
        flush=True,
    )
    return sup.wait()


def main(argv: list[str]) -> int:
    return site_main("home", argv, up, manage)
