"""Thin Celery wrapper around the traffic sampler."""

from celery import shared_task

from cloud.traffic import services
from workers.celery import TransientError


@shared_task(
    name="cloud.traffic.tasks.traffic_sample",
    soft_time_limit=60,
    time_limit=75,
    autoretry_for=(),  # beat runs it again within a period; a held lock means one is running
    ignore_result=True,
)
def traffic_sample() -> int:
    try:
        return services.traffic_sample()
    except TransientError:
        return 0
