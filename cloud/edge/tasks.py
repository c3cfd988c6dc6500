"""Edge reconciler task: run after every mapping change and by beat to heal drift."""

from celery import shared_task

from cloud.edge import haproxy, services
from workers.celery import TransientError


@shared_task(
    name="cloud.edge.tasks.edge_sync", autoretry_for=(TransientError, haproxy.EdgeUnavailable)
)
def edge_sync() -> dict[str, int]:
    result = services.edge_sync()
    return {"added": result.added, "changed": result.changed, "removed": result.removed}


@shared_task(
    name="cloud.edge.tasks.edge_update",
    autoretry_for=(TransientError, haproxy.EdgeUnavailable),
)
def edge_update(host: str) -> dict[str, int]:
    result = services.edge_update(host)
    return {"added": result.added, "changed": result.changed, "removed": result.removed}
