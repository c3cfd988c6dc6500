"""Domain and certificate workflows: add, renew and delete a domain; issue its certificate
once the cloud says this home owns the name (waiting for its DNS proof when needed), through
the tunnel (temporary port, mapping, tunnel and responder, all torn down whatever happens),
renew the ones due, and clean what a crashed run left behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from home.certs import actions, publish
from home.certs.models import CertStatus, Challenge, Domain, JobState
from home.cloudlink.client import CloudError
from home.cloudlink.services import (
    Ownership,
    cloud,
    link,
    name_ownership,
    name_verify,
    names_ownership,
)
from home.tunnels import services as tunnels
from home.tunnels.models import ProxyEntry, Tunnel
from workers.celery import TransientError
from workers.common import acme
from workers.common.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    Unavailable,
    invalid_from,
)
from workers.common.metrics import Timing, timed
from workers.common.names import validate_hostname
from workers.locks import exclusive

log = logging.getLogger(__name__)

CERT_ISSUE = Timing(
    "cloudathome_certificate_issue_seconds",
    "Certificate flows (ACME order through the tunnel, files written) by outcome",
    ("outcome",),
)

TEMP_PREFIX = "acme "
ROUTE_TIMEOUT = 15.0
TUNNEL_TIMEOUT = 20.0


def domain_create(
    name: str,
    email: str,
    cert_dir: str,
    challenge: str = Challenge.HTTP01,
    post_renew_action: str = "",
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
    cert_dir = cert_dir_check(cert_dir)
    if challenge not in Challenge.values:
        raise Invalid("must be 'http-01' or 'tls-alpn-01'", field="challenge")
    action = action_check(post_renew_action)
    with transaction.atomic():
        if Domain.objects.filter(name=name).exists():
            raise Conflict("this domain is already added", field="name")
        domain = Domain.objects.create(
            name=name,
            email=email,
            cert_dir=cert_dir,
            challenge=challenge,
            post_renew_action=action,
            job_state=JobState.PENDING,
            job_step="waiting for a worker",
        )
        transaction.on_commit(lambda: cert_tasks.certificate_issue.delay(domain.pk))
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
        transaction.on_commit(lambda: cert_tasks.certificate_issue.delay(domain.pk, True))
    domain.refresh_from_db()


def with_entries(domains: QuerySet[Domain]) -> QuerySet[Domain]:
    """Domains with their entries and each entry's tunnel read in one query: a concurrent
    delete removes an entry with its tunnel, so a reader never meets one without the other
    (prefetching the tunnels separately could, and answered 500)."""
    return domains.prefetch_related(
        Prefetch("entries", queryset=ProxyEntry.objects.select_related("tunnel"))
    )


def domain_get(domain_id: int) -> Domain:
    """A domain with its entries and their tunnels (NotFound names the id)."""
    domain = with_entries(Domain.objects.filter(pk=domain_id)).first()
    if domain is None:
        raise NotFound(f"there is no domain with id {domain_id}")
    return domain


def domain_delete(domain: Domain) -> None:
    for entry in domain.entries.all():
        tunnels.entry_delete(entry)
    domain.delete()


def acme_settings() -> acme.AcmeSettings:
    return acme.AcmeSettings(
        directory_url=settings.ACME_DIRECTORY,
        ca_bundle=settings.ACME_CA_BUNDLE,
        account_key_path=Path(settings.ACME_ACCOUNT_KEY),
    )


def _step(domain: Domain, step: str) -> None:
    log.info("certificate %s: %s", domain.name, step)
    Domain.objects.filter(pk=domain.pk).update(job_step=step, job_updated=timezone.now())


def _scheme(challenge: str) -> str:
    return "http" if challenge == Challenge.HTTP01 else "https"


def _wait_routed(slug: str, host: str, scheme: str) -> None:
    """The cloud applies mappings asynchronously; the CA must not knock before the route."""
    deadline = time.monotonic() + ROUTE_TIMEOUT
    while time.monotonic() < deadline:
        for mapping in cloud().mappings(slug):
            if (
                mapping["host"] == host
                and mapping["scheme"] == scheme
                and mapping.get("edge") == "routed"
            ):
                return
        time.sleep(0.1)
    raise acme.AcmeError(
        f"{host}: the cloud edge did not route the temporary mapping in {ROUTE_TIMEOUT:g} s"
    )


def _cleanup(tunnel: Tunnel | None, host: str, scheme: str) -> None:
    if tunnel is not None:
        tunnels.tunnel_stop_now(tunnel)
        Tunnel.objects.filter(pk=tunnel.pk).delete()
    try:
        cloud().delete_mapping(link().home_slug, host, scheme=scheme)
    except CloudError as exc:
        log.warning("could not remove the temporary mapping of %s: %s", host, exc)


@contextlib.contextmanager
def _exposed(domain: Domain, responder_port: int) -> Iterator[None]:
    """Make our challenge responder reachable through the edge for the CA, then undo it."""
    scheme = _scheme(domain.challenge)
    slug = link().home_slug
    tunnel: Tunnel | None = None
    try:
        tunnel = tunnels.tunnel_reserve(
            f"{TEMP_PREFIX}{domain.name}", responder_port, temporary=True, desired_open=True
        )
        port = tunnel.remote_port
        _step(domain, f"port {port} allocated")
        cloud().create_mapping(slug, domain.name, scheme, port)
        _step(domain, f"temporary {scheme} mapping registered")
        # A port released a moment ago may still be held by the cloud's sshd for the session
        # that just ended; retry briefly instead of failing the whole order.
        deadline = time.monotonic() + TUNNEL_TIMEOUT
        while tunnels.tunnel_reconcile(tunnel.pk) != "open":
            tunnel.refresh_from_db()
            if time.monotonic() > deadline:
                raise acme.AcmeError(
                    f"{domain.name}: the temporary tunnel did not open: {tunnel.last_error}"
                )
            Tunnel.objects.filter(pk=tunnel.pk).update(retry_at=None)
            time.sleep(0.5)
        _step(domain, "tunnel open")
        _wait_routed(slug, domain.name, scheme)
        yield
    except CloudError as exc:
        raise acme.AcmeError(
            f"{domain.name}: the cloud refused the temporary mapping: {exc}"
        ) from None
    finally:
        _step(domain, "cleaning up")
        _cleanup(tunnel, domain.name, scheme)


def certificate_issue(domain_id: int, force: bool = False) -> str:
    """Run the ACME flow for a domain; one run per domain at a time. Returns the job state."""
    with exclusive(settings.REDIS_URL, f"cert-{domain_id}", timeout=300, wait=5):
        domain = Domain.objects.filter(pk=domain_id).first()
        if domain is None:
            return "gone"
        if not force and domain.cert_status == CertStatus.VALID and not _due(domain):
            Domain.objects.filter(pk=domain.pk).update(job_state=JobState.DONE)
            return JobState.DONE
        certificates_cleanup(domain.name)  # whatever a crashed run left
        Domain.objects.filter(pk=domain.pk).update(
            job_state=JobState.RUNNING, job_error="", job_step="starting"
        )
        try:
            # A folder stored before CLOUDATHOME_CERT_ROOT (or since moved out of it) fails
            # here, before the CA is asked for anything.
            cert_dir_check(domain.cert_dir)
            if not _owned(domain):
                return JobState.WAITING
            with timed(CERT_ISSUE):
                issued = acme.issue(
                    acme_settings(),
                    domain.name,
                    domain.email,
                    domain.challenge,  # type: ignore[arg-type]
                    lambda responder: _exposed(domain, responder.port),
                    on_step=lambda step: _step(domain, step),
                )
                path = certificate_publish(domain, issued)
        except (
            NotOwned,
            acme.AcmeError,
            DomainError,
            ValueError,
            OSError,
            tunnels.NoFreePort,
        ) as exc:
            renewing = domain.cert_status == CertStatus.VALID
            Domain.objects.filter(pk=domain.pk).update(
                job_state=JobState.FAILED,
                job_error=str(exc),
                job_step="failed",
                cert_status=CertStatus.VALID if renewing else CertStatus.FAILED,
                renew_failures=domain.renew_failures + 1,
                renew_after=timezone.now() + acme.renew_backoff(domain.renew_failures + 1),
            )
            return JobState.FAILED
        Domain.objects.filter(pk=domain.pk).update(
            job_state=JobState.DONE,
            job_step="certificate issued",
            cert_status=CertStatus.VALID,
            cert_path=str(path),
            cert_expiry=issued.not_after,
            cert_issued=timezone.now(),
            renew_failures=0,
            renew_after=None,
        )
        if domain.post_renew_action:
            from home.certs import tasks as cert_tasks

            cert_tasks.post_renew_run.delay(domain.pk)
        return JobState.DONE


def _record_ownership(domain: Domain, owner: Ownership) -> None:
    Domain.objects.filter(pk=domain.pk).update(
        ownership=owner.status,
        ownership_reason=owner.reason,
        proof_name=owner.record_name,
        proof_value=owner.record_value,
    )


class NotOwned(Exception):
    """The cloud says this home cannot publish the name (or could not be asked)."""


def _owned(domain: Domain) -> bool:
    """Ask the cloud who owns the name before anything is mapped or ordered: True when this
    home does (under its base domain, or a verified custom domain); False when the domain
    now waits for its TXT record; NotOwned with the cloud's reason when it cannot be owned."""
    _step(domain, "asking the cloud who owns the name")
    try:
        owner = name_ownership(domain.name)
    except CloudError as exc:
        raise NotOwned(f"the cloud could not say who owns {domain.name}: {exc}") from None
    _record_ownership(domain, owner)
    if owner.owned:
        _step(domain, f"name owned ({owner.reason or 'verified'})")
        return True
    if owner.status in ("unverified", "failed"):
        Domain.objects.filter(pk=domain.pk).update(
            job_state=JobState.WAITING, job_step=f"waiting for the TXT record {owner.record_name}"
        )
        return False
    raise NotOwned(owner.reason)


def certificates_waiting() -> list[int]:
    """Beat: what the cloud says of every domain's name, so the console shows a custom domain
    that lost its proof; the domains waiting for theirs that the cloud now says this home owns
    go back to the queue (their certificate follows by itself)."""
    domains = [d for d in Domain.objects.all() if d.ownership or d.job_state == JobState.WAITING]
    if not domains:
        return []  # no job has asked about any name yet: the first one will
    waiting = {d.name for d in domains if d.job_state == JobState.WAITING}
    try:
        owners = names_ownership([d.name for d in domains], add=waiting)
    except CloudError as exc:
        log.warning("cannot ask the cloud who owns the names: %s", exc)
        return []
    resumed = []
    for domain in domains:
        owner = owners[domain.name]
        _record_ownership(domain, owner)
        if owner.owned and Domain.objects.filter(pk=domain.pk, job_state=JobState.WAITING).update(
            job_state=JobState.PENDING, job_step="waiting for a worker", job_updated=timezone.now()
        ):
            resumed.append(domain.pk)
    return resumed


def domain_check_name(domain: Domain) -> None:
    """ "Check now": the cloud looks the TXT record up at once (the next poll sees it)."""
    try:
        name_verify(domain.name)
    except CloudError as exc:
        raise Unavailable(f"the cloud could not check the record: {exc}") from None


# --- the certificate folder: CLOUDATHOME_CERT_ROOT or below it (home.certs.publish) --------


def cert_dir_check(cert_dir: str) -> str:
    """The normalized folder, or Invalid naming cert_dir: below the root, no `..`, no
    symlink out of it."""
    try:
        return publish.check_dir(cert_dir, settings.CERT_ROOT)
    except ValueError as exc:
        raise invalid_from(exc, "cert_dir") from None


def certificate_publish(domain: Domain, issued: acme.IssuedCert) -> Path:
    """Write the four files; refuses (publish.InTheWay, naming the path) to replace
    anything the console did not create."""
    return publish.publish(
        settings.CERT_ROOT,
        Path(domain.cert_dir),
        domain.name,
        {
            "cert.pem": issued.cert_pem,
            "chain.pem": issued.chain_pem,
            "fullchain.pem": issued.fullchain_pem,
            "privkey.pem": issued.key_pem,
        },
    )


# --- post-renewal actions: the operator's, picked by name (home.certs.actions) ---------------


def action_check(name: str) -> str:
    """A post-renewal action is a name the operator configured; anything else (a path, a
    command line) is refused naming the field."""
    if name and name not in settings.POST_RENEW_ACTIONS:
        known = ", ".join(sorted(settings.POST_RENEW_ACTIONS)) or "none are configured"
        raise Invalid(
            f"{name[:60]!r} is not one of the operator's actions ({known}; "
            f"set in {actions.VARIABLE})",
            field="post_renew_action",
        )
    return name


def post_renew_run(domain_id: int) -> int | None:
    """Run the domain's action after an issuance and keep its outcome for the dashboard.
    An action the operator has since removed from the configuration does not run."""
    domain = Domain.objects.filter(pk=domain_id).first()
    if domain is None or not domain.post_renew_action:
        return None
    argv = settings.POST_RENEW_ACTIONS.get(domain.post_renew_action)
    if argv is None:
        code, output = (
            None,
            (f"not run: {domain.post_renew_action!r} is no longer in {actions.VARIABLE}"),
        )
    else:
        code, output = actions.run(
            argv, settings.POST_RENEW_TIMEOUT, actions.environment(domain.name, domain.cert_path)
        )
    Domain.objects.filter(pk=domain.pk).update(
        action_ran=timezone.now(), action_exit=code, action_output=output
    )
    log.info("post-renewal action %s of %s: exit %s", domain.post_renew_action, domain.name, code)
    return code


def _due(domain: Domain) -> bool:
    if domain.cert_expiry is None:
        return True
    return domain.cert_expiry <= timezone.now() + dt.timedelta(days=settings.RENEW_DAYS)


def certificates_due() -> list[int]:
    now = timezone.now()
    return list(
        Domain.objects.filter(
            cert_status=CertStatus.VALID,
            cert_expiry__lte=now + dt.timedelta(days=settings.RENEW_DAYS),
            # A certificate younger than RENEW_MIN_AGE is never renewed again by beat, whatever
            # the window says: a misconfigured window must not hammer the CA's rate limits.
            cert_issued__lte=now - dt.timedelta(seconds=settings.RENEW_MIN_AGE),
        )
        .filter(Q(renew_after__isnull=True) | Q(renew_after__lte=now))
        .exclude(job_state__in=[JobState.RUNNING, JobState.PENDING])
        .values_list("pk", flat=True)
    )


def certificates_cleanup(name: str) -> int:
    """Remove the temporary tunnels and mappings a run for `name` left behind."""
    count = 0
    for tunnel in Tunnel.objects.filter(temporary=True, name=f"{TEMP_PREFIX}{name}"):
        domain = Domain.objects.filter(name=name).first()
        _cleanup(tunnel, name, _scheme(domain.challenge if domain else Challenge.HTTP01))
        count += 1
    return count


def certificates_recover() -> int:
    """Worker start and beat: finish what a killed run left (temporary tunnel and mapping,
    a job stuck 'running'), for every domain whose lock no live run holds."""
    names = {
        t.removeprefix(TEMP_PREFIX)
        for t in Tunnel.objects.filter(temporary=True).values_list("name", flat=True)
    }
    names |= set(Domain.objects.filter(job_state=JobState.RUNNING).values_list("name", flat=True))
    recovered = 0
    for name in sorted(names):
        domain = Domain.objects.filter(name=name).first()
        lock = f"cert-{domain.pk}" if domain else f"cert-orphan-{name}"
        try:
            with exclusive(settings.REDIS_URL, lock, timeout=300, wait=0.1):
                recovered += certificates_cleanup(name)
                Domain.objects.filter(name=name, job_state=JobState.RUNNING).update(
                    job_state=JobState.FAILED,
                    job_step="interrupted",
                    job_error="the worker stopped during the flow; nothing was left behind, retry to run it again",
                )
        except TransientError:
            continue  # a live run holds it
    return recovered
