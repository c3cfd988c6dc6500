"""`cloudathome cloud ...`: run the whole cloud site in the foreground, or a Django
management command of it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloud.settings")


def _django() -> None:
    import django

    django.setup()


def manage(args: list[str]) -> int:
    _django()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["cloudathome cloud manage", *args])
    return 0


def up(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cloudathome cloud up")
    parser.parse_args(args)
    _django()
    from django.conf import settings
    from django.core.management import call_command

    from cloud.edge import services as edge
    from workers.supervise import Service, Supervisor, port_open, python_module, redis_service

    state = Path(settings.STATE_DIR)
    print(f"cloudathome cloud: state in {state}", flush=True)
    call_command("migrate", interactive=False, verbosity=0)
    call_command("ensure_admin")

    env = dict(os.environ, CLOUDATHOME_STATE_DIR=str(state), REDIS_URL=settings.REDIS_URL)
    sup = Supervisor(state / "logs")
    try:
        if not os.environ.get("REDIS_URL"):
            sup.start(redis_service(state))
        sup.start(Service("haproxy", edge.haproxy_prepare(), env=env, ready=edge.haproxy_ready))
        sup.start(
            Service(
                "sshd", edge.sshd_prepare(), env=env, ready=lambda: port_open(settings.SSH_PORT)
            )
        )
        sup.start(
            Service(
                "web",
                python_module(
                    "gunicorn",
                    "cloud.wsgi",
                    "--bind",
                    f"{settings.WEB_BIND}:{settings.WEB_PORT}",
                    "--workers",
                    "2",
                    "--threads",
                    "4",
                    "--access-logfile",
                    "-",
                ),
                env=env,
                ready=lambda: port_open(settings.WEB_PORT),
            )
        )
        celery = ["-A", "cloud.celery"]
        sup.start(
            Service(
                "worker",
                python_module(
                    "celery", *celery, "worker", "-l", "info", "-c", "2", "-n", "cloud@%h"
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
        print(f"cloudathome cloud: {exc}", file=sys.stderr)
        return 1
    host = settings.PUBLIC_HOST
    print(
        f"cloud site up: web http://{host}:{settings.WEB_PORT}/  "
        f"edge https :{settings.HTTPS_PORT} http :{settings.HTTP_PORT}  "
        f"sshd :{settings.SSH_PORT}  flower http://127.0.0.1:{settings.FLOWER_PORT}/  (Ctrl-C stops)",
        flush=True,
    )
    return sup.wait()


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: cloudathome cloud up | manage <django command> [args]")
        return 0 if argv else 2
    if argv[0] == "up":
        return up(argv[1:])
    if argv[0] == "manage":
        return manage(argv[1:])
    print(f"cloudathome cloud: unknown command {argv[0]!r}", file=sys.stderr)
    return 2
