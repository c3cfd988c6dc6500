"""Thin Celery wrappers around the home services: ids in, service call, nothing out."""

from celery import shared_task

from cloud.homes import services


@shared_task(name="cloud.homes.tasks.home_provision")
def home_provision(home_id: int) -> None:
    services.home_provision(home_id)


@shared_task(name="cloud.homes.tasks.home_finish_release")
def home_finish_release(home_id: int) -> None:
    services.home_finish_release(home_id)


@shared_task(name="cloud.homes.tasks.homes_reconcile")
def homes_reconcile() -> dict[str, int]:
    return services.homes_reconcile()
