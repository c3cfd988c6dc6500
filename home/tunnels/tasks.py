"""Thin Celery wrappers around the tunnel reconciler."""

from celery import shared_task

from home.tunnels import services
from workers.celery import TransientError


@shared_task(name="home.tunnels.tasks.tunnel_reconcile", soft_time_limit=60, time_limit=75)
def tunnel_reconcile(tunnel_id: int) -> str:
    return services.tunnel_reconcile(tunnel_id)


@shared_task(
    name="home.tunnels.tasks.tunnels_supervise",
    soft_time_limit=60,
    time_limit=75,
    autoretry_for=(),  # beat runs it again in seconds; a held lock just means one is running
    ignore_result=True,
)
def tunnels_supervise() -> dict[str, int]:
    try:
        return services.tunnels_supervise()
    except TransientError:
        return {}
