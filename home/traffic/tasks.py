"""Thin Celery wrapper around the traffic refresh."""

from celery import shared_task

from home.traffic import services


@shared_task(
    name="home.traffic.tasks.traffic_refresh",
    soft_time_limit=30,
    time_limit=45,
    autoretry_for=(),  # beat asks again within a period
    ignore_result=True,
)
def traffic_refresh() -> int:
    return services.traffic_refresh()
