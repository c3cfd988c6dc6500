"""`cloudathome cloud ...`: run the whole cloud site in the foreground, prepare its state
(what `up` does before starting anything; containers run it as a one-shot), or run a
Django management command of it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from workers.common.supervise import (
    Service,
    celery_services,
    django_manage,
    django_migrate,
    port_open,
    run_site,
    site_main,
    web_service,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloud.settings")


def manage(args: list[str]) -> int:
    return django_manage("cloud", args)


def site_prepare() -> tuple[list[str], list[str]]:
    """Migrate, create the first administrator, install a checked haproxy.cfg (+ maps) and
    sshd config (+ host keys); return the argv of HAProxy and of sshd. Idempotent."""
    from django.core.management import call_command

    from cloud.edge import services as edge

    django_migrate()
    call_command("ensure_admin")
    return edge.haproxy_prepare(), edge.sshd_prepare()


def prepare(args: list[str]) -> int:
    argparse.ArgumentParser(
        prog="cloudathome cloud prepare",
        description="Prepare the database and the edge configs, then exit (what `up` does first).",
    ).parse_args(args)
    import django

    django.setup()
    from django.conf import settings

    try:
        site_prepare()
    except Exception as exc:
        print(f"cloudathome cloud: {exc}", file=sys.stderr)
        return 1
    print(f"cloudathome cloud: prepared {settings.STATE_DIR}", flush=True)
    return 0


def up(args: list[str]) -> int:
    argparse.ArgumentParser(prog="cloudathome cloud up").parse_args(args)
    import django

    django.setup()
    from django.conf import settings

    from cloud.edge import services as edge

    state = Path(settings.STATE_DIR)
    print(f"cloudathome cloud: state in {state}", flush=True)
    try:
        haproxy_argv, sshd_argv = site_prepare()
    except Exception as exc:
        print(f"cloudathome cloud: {exc}", file=sys.stderr)
        return 1

    def services(env: dict[str, str]) -> Iterator[Service]:
        yield Service("haproxy", haproxy_argv, env=env, ready=edge.haproxy_ready)
        yield Service("sshd", sshd_argv, env=env, ready=lambda: port_open(settings.SSH_PORT))
        yield web_service("cloud.wsgi", edge.edge_config().web_socket, env)
        yield from celery_services("cloud", state, settings.FLOWER_BIND, settings.FLOWER_PORT, env)

    https = f":{settings.HTTPS_PORT}" if settings.HTTPS_PORT != 443 else ""
    public = f"https://{settings.PUBLIC_HOST}{https}/ and " if settings.PUBLIC_TLS else ""
    banner = (
        f"cloud site up: web {public}http://{settings.PUBLIC_HOST}:{settings.WEB_PORT}/  "
        f"edge https :{settings.HTTPS_PORT} http :{settings.HTTP_PORT}  "
        f"sshd :{settings.SSH_PORT}  flower http://{settings.FLOWER_BIND}:{settings.FLOWER_PORT}/  (Ctrl-C stops)"
    )
    return run_site("cloud", state, settings.REDIS_URL, services, banner)


def main(argv: list[str]) -> int:
    return site_main("cloud", argv, {"up": up, "prepare": prepare, "manage": manage})
