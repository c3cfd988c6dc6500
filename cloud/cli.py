"""`cloudathome cloud ...`: run the whole cloud site in the foreground, or a Django
management command of it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

from workers.supervise import (
    Service,
    celery_services,
    django_manage,
    port_open,
    run_site,
    site_main,
    web_service,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloud.settings")


def manage(args: list[str]) -> int:
    return django_manage("cloud", args)


def up(args: list[str]) -> int:
    argparse.ArgumentParser(prog="cloudathome cloud up").parse_args(args)
    import django

    django.setup()
    from django.conf import settings

    from cloud.edge import services as edge

    state = Path(settings.STATE_DIR)
    print(f"cloudathome cloud: state in {state}", flush=True)

    def services(env: dict[str, str]) -> Iterator[Service]:
        yield Service("haproxy", edge.haproxy_prepare(), env=env, ready=edge.haproxy_ready)
        yield Service(
            "sshd", edge.sshd_prepare(), env=env, ready=lambda: port_open(settings.SSH_PORT)
        )
        yield web_service("cloud.wsgi", settings.WEB_BIND, settings.WEB_PORT, env)
        yield from celery_services("cloud", state, settings.FLOWER_PORT, env)

    banner = (
        f"cloud site up: web http://{settings.PUBLIC_HOST}:{settings.WEB_PORT}/  "
        f"edge https :{settings.HTTPS_PORT} http :{settings.HTTP_PORT}  "
        f"sshd :{settings.SSH_PORT}  flower http://127.0.0.1:{settings.FLOWER_PORT}/  (Ctrl-C stops)"
    )
    return run_site("cloud", state, settings.REDIS_URL, services, banner)


def main(argv: list[str]) -> int:
    return site_main("cloud", argv, up, manage)
