"""Domain and proxy-entry workflows: validate, ask the cloud for the mapping, store the
desired state, and leave processes to the tunnel reconciler."""

from __future__ import annotations

import datetime as dt
import logging
import shlex
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from home.cloudlink.client import CloudError
from home.cloudlink.services import cloud, link
from home.domains.models import Challenge, Domain, JobState, ProxyEntry
from home.tunnels import services as tunnels
from workers.celery import send_on_commit
from workers.common.errors import Conflict, Invalid, Unavailable, invalid_from
from workers.common.names import validate_hostname

log = logging.getLogger(__name__)


def parse_command(text: str) -> list[str]:
    """The post-renewal command as an argument list (it is never given to a shell)."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise Invalid(f"cannot parse: {exc}", field="post_renew_command") from None
    if argv and not Path(argv[0]).is_absolute():
        raise Invalid("the program must be an absolute path", field="post_renew_command")
    return argv


def domain_create(
    name: str,
    email: str,
    cert_dir: str,
    challenge: str = Challenge.HTTP01,
    post_renew_command: list[str] | None = None,
) -> Domain:
    from home.certs import tasks as cert_tasks

    try:
        name = validate_hostname(name, field="name")
    except ValueError as exc:
        raise invalid_from(exc, "name") from None
    try:
        validate_email(email)
    except ValidationError:
        raise Invalid("not a valid email address", field="email") from None
    if not cert_dir or not Path(cert_dir).is_absolute():
        raise Invalid("must be an absolute path", field="cert_dir")
    if challenge not in Challenge.values:
        raise Invalid("must be 'http-01' or 'tls-alpn-01'", field="challenge")
    command = list(post_renew_command or [])
    if command and not Path(command[0]).is_absolute():
        raise Invalid("the program must be an absolute path", field="post_renew_command")
    with transaction.atomic():
        if Domain.objects.filter(name=name).exists():
            raise Conflict("this domain is already added", field="name")
        domain = Domain.objects.create(
            name=name,
            email=email,
            cert_dir=str(Path(cert_dir)),
            challenge=challenge,
            post_renew_command=command,
            job_state=JobState.PENDING,
            job_step="waiting for a worker",
        )
        send_on_commit(cert_tasks.certificate_issue, domain.pk)
    return domain


# A queued run that no worker picked up for this long is presumed lost (broker restarted):
# "Renew now" may queue another instead of waiting forever.
STALE_PENDING = dt.timedelta(minutes=10)


def domain_renew(domain: Domain) -> None:
    """Queue a forced certificate run; refused while one is running or freshly queued, so a
    double click never asks the CA twice (its rate limits are per week)."""
    from home.certs import tasks as cert_tasks

    now = timezone.now()
    with transaction.atomic():
        claimed = (
            Domain.objects.filter(pk=domain.pk)
            .exclude(job_state=JobState.RUNNING)
            .exclude(job_state=JobState.PENDING, job_updated__gt=now - STALE_PENDING)
            .update(
                job_state=JobState.PENDING,
                job_step="waiting for a worker",
                job_error="",
                job_updated=now,
            )
        )
        if not claimed:
            raise Conflict("a certificate job for this domain is already queued or running")
        send_on_commit(cert_tasks.certificate_issue, domain.pk, True)
    domain.refresh_from_db()


def domain_delete(domain: Domain) -> None:
    for entry in domain.entries.all():
        entry_delete(entry)
    domain.delete()


def entry_create(
    domain: Domain, hostname: str, home_port: int, proxy_protocol: bool = False
) -> ProxyEntry:
    """Reserve a tunnel port, create the cloud's https mapping, then store the entry; whatever
    fails undoes the steps before it, so nothing is half-applied."""
    try:
        hostname = validate_hostname(hostname, field="hostname")
    except ValueError as exc:
        raise invalid_from(exc, "hostname") from None
    if isinstance(home_port, bool) or not 1 <= int(home_port) <= 65535:
        raise Invalid("must be 1..65535", field="home_port")
    if ProxyEntry.objects.filter(hostname=hostname).exists():
        raise Conflict("an entry for this hostname exists", field="hostname")
    try:
        tunnel = tunnels.tunnel_reserve(f"entry {hostname}", int(home_port))
    except tunnels.NoFreePort as exc:
        raise Conflict(str(exc), field="hostname") from None
    slug = link().home_slug
    try:
        cloud().create_mapping(slug, hostname, "https", tunnel.remote_port, proxy_protocol)
    except CloudError as exc:
        tunnel.delete()
        if exc.status in (400, 409, 422):
            raise Invalid(str(exc), field="hostname") from None
        raise Unavailable(f"the cloud refused the mapping: {exc}") from None
    try:
        return ProxyEntry.objects.create(
            domain=domain,
            hostname=hostname,
            home_port=int(home_port),
            proxy_protocol=proxy_protocol,
            tunnel=tunnel,
        )
    except Exception:
        cloud().delete_mapping(slug, hostname, scheme="https")
        tunnel.delete()
        raise


def entry_delete(entry: ProxyEntry) -> None:
    """Stop the tunnel now, remove the cloud mapping, then the rows."""
    tunnels.tunnel_stop_now(entry.tunnel)
    try:
        cloud().delete_mapping(link().home_slug, entry.hostname, scheme="https")
    except CloudError as exc:
        raise Unavailable(f"the cloud could not remove the mapping: {exc}") from None
    tunnel = entry.tunnel
    with transaction.atomic():
        entry.delete()
        tunnel.delete()


def entry_tunnel(entry: ProxyEntry, open_: bool) -> None:
    tunnels.tunnel_set_desired(entry.tunnel, open_)
