"""`cloudathome cloud ...`: run the whole cloud site in the foreground, or a Django
management command of it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from workers.supervise import django_manage, site_main

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloud.settings")


def manage(args: list[str]) -> int:
    return django_manage("cloud", args)


def up(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cloudathome cloud up")
    parser.parse_args(args)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from cloud.edge import services as edge
    from workers.supervise import (
        Service,
        Supervisor,
        celery_services,
        port_open,
        redis_service,
        web_service,
    )

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
        sup.start(web_service("cloud.wsgi", settings.WEB_BIND, settings.WEB_PORT, env))
        for service in celery_services("cloud", state, settings.FLOWER_PORT, env):
            sup.start(service)
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
    return site_main("cloud", argv, up, manage)
