"""Thin Celery wrapper around the link check."""

from celery import shared_task

from home.cloudlink import services


@shared_task(
    name="home.cloudlink.tasks.link_check",
    soft_time_limit=60,
    time_limit=75,
    autoretry_for=(),  # a failed check is a result to store, and beat runs it again anyway
    ignore_result=True,
)
def link_check() -> str:
    return str(services.link_check().state)
