"""The public host's certificate from the command line: what HAProxy serves and the job's state;
with `--check`, what beat does (obtain or renew it if due) in the foreground, each step printed;
with `--renew`, a new one now, whatever the window or the backoff of a failure says."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.edge import certificate
from cloud.edge.models import JobState
from workers.celery import TransientError


class Command(BaseCommand):
    help = "Show the public host's certificate; --check obtains or renews it if due, --renew now."

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--check", action="store_true", help="obtain or renew it if due")
        action.add_argument("--renew", action="store_true", help="renew it now")

    def handle(self, *args: Any, check: bool, renew: bool, **options: Any) -> None:
        if check or renew:
            try:
                state = certificate.public_cert_ensure(
                    force=renew, on_step=lambda step: self.stdout.write(f"  · {step}")
                )
            except TransientError as exc:
                raise CommandError(str(exc)) from None
            if state == "off":
                raise CommandError(
                    "the cloud has no public host of its own: set CLOUDATHOME_PUBLIC_HOST to its DNS name"
                )
        status = certificate.public_cert_status()
        if status["host"] is None:
            self.stdout.write(
                "public host: none (CLOUDATHOME_PUBLIC_HOST is localhost or an address)"
            )
            return
        self.stdout.write(f"public host: {status['host']}")
        line = f"job: {status['state']}" + (f" ({status['step']})" if status["step"] else "")
        self.stdout.write(line)
        if status["error"]:
            self.stdout.write(f"error: {status['error']}")
        if status["retry_after"]:
            self.stdout.write(f"retried after: {status['retry_after']:%Y-%m-%d %H:%M} UTC")
        cert = status["certificate"]
        if cert is None:
            self.stdout.write("certificate: none")
        else:
            what = "placeholder (self-signed)" if cert["placeholder"] else cert["issuer"]
            served = {True: "served", False: "NOT served yet", None: "HAProxy not reachable"}
            self.stdout.write(
                f"certificate: {what}, serial {cert['serial']}, valid until"
                f" {cert['not_after']:%Y-%m-%d %H:%M} UTC, {served[cert['served']]}"
            )
        if (check or renew) and status["state"] == JobState.FAILED:
            raise CommandError("the certificate could not be obtained (see the error above)")
