"""Thin Celery wrappers around the domain services: the DNS check of one domain, the beat
job that queues the checks due, and the reconciler of claims."""

from celery import shared_task

from cloud.domains import services


@shared_task(name="cloud.domains.tasks.domain_check")
def domain_check(domain_id: int) -> None:
    services.domain_check(domain_id)


@shared_task(name="cloud.domains.tasks.domains_due")
def domains_due() -> int:
    return services.domains_due()


@shared_task(name="cloud.domains.tasks.names_reconcile")
def names_reconcile() -> dict[str, int]:
    return services.names_reconcile()
