"""The certificate of the cloud's own public host (docs/architecture.md): obtained from the ACME
CA as soon as a worker starts while HAProxy serves its placeholder, renewed by beat inside the
renewal window, with HTTP-01 answered through the edge's own :80 by a responder on a socket in
the state dir. HAProxy gets each new certificate through its Runtime API, never a reload."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from django.conf import settings
from django.utils import timezone

from cloud.edge import haproxy
from cloud.edge.models import JobState, PublicCertificate
from cloud.edge.services import edge_config
from workers.common import acme
from workers.locks import exclusive

log = logging.getLogger(__name__)

Step = Callable[[str], None]


@dataclass(frozen=True)
class OnDisk:
    """What the certificate file HAProxy starts from holds (its first certificate)."""

    serial: int
    issuer: str
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    placeholder: bool  # self-signed: the cloud's own, until the CA has issued one


def on_disk(cfg: haproxy.EdgeConfig) -> OnDisk | None:
    """The public host's certificate file, or None when there is none (yet)."""
    try:
        leaf = x509.load_pem_x509_certificates(cfg.public_pem.read_bytes())[0]
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return OnDisk(
        serial=leaf.serial_number,
        issuer=leaf.issuer.rfc4514_string(),
        names=names,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        placeholder=leaf.issuer == leaf.subject,
    )


def due(cert: OnDisk | None, host: str, now: dt.datetime) -> str | None:
    """Why the public host needs a certificate from the CA now, or None. Inside the renewal
    window a certificate younger than RENEW_MIN_AGE is kept: a misconfigured window must not
    hammer the CA's rate limits."""
    if cert is None or cert.placeholder:
        return "no certificate from the CA yet"
    if host not in cert.names:
        return f"the certificate is for {', '.join(cert.names) or 'no name'}, not {host}"
    if cert.not_after > now + dt.timedelta(days=settings.RENEW_DAYS):
        return None
    if now - cert.not_before < dt.timedelta(seconds=settings.RENEW_MIN_AGE):
        return None
    return f"the certificate expires on {cert.not_after:%Y-%m-%d %H:%M} UTC: renewing"


def acme_settings(cfg: haproxy.EdgeConfig) -> acme.AcmeSettings:
    return acme.AcmeSettings(
        directory_url=settings.ACME_DIRECTORY,
        ca_bundle=settings.ACME_CA_BUNDLE,
        account_key_path=settings.ACME_ACCOUNT_KEY,
        responder_socket=cfg.acme_socket,
    )


@contextlib.contextmanager
def _exposed(edge: haproxy.Edge) -> Iterator[None]:
    """The CA's requests for the public host's challenge reach the responder while entered."""
    edge.acme_responder(ready=True)
    try:
        yield
    finally:
        try:
            edge.acme_responder(ready=False)
        except haproxy.EdgeError as exc:  # a restarted HAProxy starts with it in maintenance
            log.warning("public certificate: could not close the challenge path: %s", exc)


def _served_is_on_disk(edge: haproxy.Edge, cert: OnDisk) -> None:
    """Heal a certificate that reached the file but not HAProxy's memory (it was unreachable
    when it was installed); a HAProxy that is down reads the file when it starts."""
    try:
        if edge.served_serial() == cert.serial:
            return
    except haproxy.EdgeUnavailable:
        return
    log.info("public certificate: HAProxy serves another one than its file; installing the file")
    edge.api.set_ssl_cert(edge.cfg.public_pem, edge.cfg.public_pem.read_text())


def public_cert_ensure(force: bool = False, on_step: Step | None = None) -> str:
    """Obtain or renew the public host's certificate when due (any time with `force`), after
    the backoff of a failure unless forced; install it. Returns the job state ("off" without
    a public host). One run at a time (a Redis lock)."""
    cfg = edge_config()
    host = cfg.public_host
    if host is None:
        return "off"
    with exclusive(settings.REDIS_URL, "public-cert", timeout=300, wait=5):
        row, _ = PublicCertificate.objects.get_or_create(host=host)
        if row.job_state == JobState.RUNNING:  # under the lock: no run is live, one was killed
            PublicCertificate.objects.filter(pk=row.pk).update(
                job_state=JobState.FAILED,
                job_step="interrupted",
                job_error="the worker stopped during the run; the next check runs it again",
            )
            row.refresh_from_db()
        edge = haproxy.Edge(cfg)
        now = timezone.now()
        cert = on_disk(cfg)
        reason = "renewal asked for" if force else due(cert, host, now)
        if reason is None:
            if cert is not None:
                _served_is_on_disk(edge, cert)
            return str(row.job_state)
        if not force and row.retry_after is not None and row.retry_after > now:
            return str(row.job_state)

        def step(text: str) -> None:
            log.info("public certificate %s: %s", host, text)
            PublicCertificate.objects.filter(pk=row.pk).update(
                job_step=text[:200], job_updated=timezone.now()
            )
            if on_step is not None:
                on_step(text)

        PublicCertificate.objects.filter(pk=row.pk).update(job_state=JobState.RUNNING, job_error="")
        step(reason)
        try:
            issued = acme.issue(
                acme_settings(cfg),
                host,
                settings.ACME_EMAIL,
                "http-01",
                lambda responder: _exposed(edge),
                on_step=step,
            )
            step("installing the certificate in HAProxy")
            edge.install_certificate(issued.fullchain_pem + issued.key_pem)
        except (acme.AcmeError, haproxy.EdgeError, ValueError, OSError) as exc:
            failures = row.failures + 1
            PublicCertificate.objects.filter(pk=row.pk).update(
                job_state=JobState.FAILED,
                job_step="failed",
                job_error=str(exc),
                failures=failures,
                retry_after=timezone.now() + acme.renew_backoff(failures),
                job_updated=timezone.now(),
            )
            if on_step is not None:
                on_step(f"failed: {exc}")
            return JobState.FAILED
        PublicCertificate.objects.filter(pk=row.pk).update(
            job_state=JobState.DONE, failures=0, retry_after=None
        )
        step(f"certificate installed, valid until {issued.not_after:%Y-%m-%d %H:%M} UTC")
        return JobState.DONE


def public_cert_status() -> dict[str, Any]:
    """What the admin API (schemas.PublicCertOut) and `cloud manage public_cert` show: the job
    and the certificate file, and whether HAProxy serves that one (None: it cannot be asked)."""
    cfg = edge_config()
    host = cfg.public_host
    job = PublicCertificate.objects.filter(host=host).first() if host else None
    cert = on_disk(cfg) if host else None
    served: bool | None = None
    if cert is not None:
        with contextlib.suppress(haproxy.EdgeError):
            served = haproxy.Edge(cfg).served_serial() == cert.serial
    return {
        "host": host,
        "state": job.job_state if job else (JobState.IDLE if host else "off"),
        "step": job.job_step if job else "",
        "error": job.job_error if job else "",
        "updated": job.job_updated if job else None,
        "failures": job.failures if job else 0,
        "retry_after": job.retry_after if job else None,
        "certificate": None
        if cert is None
        else {
            "serial": f"{cert.serial:X}",
            "issuer": cert.issuer,
            "names": list(cert.names),
            "not_before": cert.not_before,
            "not_after": cert.not_after,
            "placeholder": cert.placeholder,
            "served": served,
        },
    }
