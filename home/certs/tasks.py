"""Thin Celery wrappers around the certificate workflows."""

from celery import shared_task
from django.conf import settings

from home.certs import services


@shared_task(name="home.certs.tasks.certificate_issue", soft_time_limit=240, time_limit=300)
def certificate_issue(domain_id: int, force: bool = False) -> str:
    return services.certificate_issue(domain_id, force)


@shared_task(name="home.certs.tasks.certificates_renew")
def certificates_renew() -> int:
    """Beat, hourly: queue a run for every certificate inside the renewal window and past
    the backoff of a failed renewal."""
    due = services.certificates_due()
    for pk in due:
        certificate_issue.delay(pk)
    return len(due)


@shared_task(name="home.certs.tasks.certificates_recover")
def certificates_recover() -> int:
    return services.certificates_recover()


@shared_task(name="home.certs.tasks.certificates_waiting")
def certificates_waiting() -> int:
    """Beat: refresh what the cloud says of every domain's name; the ones waiting for their
    DNS proof that this home now owns get their certificate run."""
    resumed = services.certificates_waiting()
    for pk in resumed:
        certificate_issue.delay(pk)
    return len(resumed)


@shared_task(
    name="home.certs.tasks.post_renew_run",
    soft_time_limit=settings.POST_RENEW_TIMEOUT + 30,
    time_limit=settings.POST_RENEW_TIMEOUT + 60,
)
def post_renew_run(domain_id: int) -> int | None:
    """The domain's post-renewal action, after an issuance (its own time limit inside)."""
    return services.post_renew_run(domain_id)
