"""`cloudathome home ...`: run the Home Console site in the foreground (web, Celery worker
+ beat, Flower, a private Redis when REDIS_URL is unset), or a Django command of it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "home.settings")


def manage(args: list[str]) -> int:
    import django

    django.setup()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["cloudathome home manage", *args])
    return 0


def up(args: list[str]) -> int:
    argparse.ArgumentParser(prog="cloudathome home up").parse_args(args)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from home.cloudlink import config
    from workers.supervise import Service, Supervisor, port_open, python_module, redis_service

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
    celery = ["-A", "home.celery"]
    try:
        if not os.environ.get("REDIS_URL"):
            sup.start(redis_service(state))
        sup.start(
            Service(
                "web",
                python_module(
                    "gunicorn",
                    "home.wsgi",
                    "--bind",
                    f"{settings.HOME_BIND}:{settings.HOME_PORT}",
                    "--workers",
                    "2",
                    "--threads",
                    "4",
                    "--access-logfile",
                    "-",
                ),
                env=env,
                ready=lambda: port_open(settings.HOME_PORT, settings.HOME_BIND),
            )
        )
        sup.start(
            Service(
                "worker",
                python_module(
                    "celery", *celery, "worker", "-l", "info", "-c", "2", "-n", "home@%h"
                ),
                env=env,
            )
        )
        sup.start(
            Service(
                "beat",
                python_module(
                    "celery", *celery, "beat", "-l", "info", "-s", str(state / "beat-schedule")
                ),
                env=env,
            )
        )
        sup.start(
            Service(
                "flower",
                python_module(
                    "celery",
                    *celery,
                    "flower",
                    "--address=127.0.0.1",
                    f"--port={settings.FLOWER_PORT}",
                ),
                env=env,
            )
        )
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
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: cloudathome home up | manage <django command> [args]")
        return 0 if argv else 2
    if argv[0] == "up":
        return up(argv[1:])
    if argv[0] == "manage":
        return manage(argv[1:])
    print(f"cloudathome home: unknown command {argv[0]!r}", file=sys.stderr)
    return 2
