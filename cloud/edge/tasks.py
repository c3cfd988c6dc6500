"""Edge reconciler tasks: the routes, run after every mapping change and by beat to heal
drift; the public host's certificate, at every worker start and hourly from beat."""

from celery import shared_task

from cloud.edge import certificate, haproxy, services
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


@shared_task(
    name="cloud.edge.tasks.public_cert_ensure",
    soft_time_limit=240,
    time_limit=300,
    autoretry_for=(TransientError, haproxy.EdgeUnavailable),
)
def public_cert_ensure(force: bool = False) -> str:
    """Obtain or renew the public host's certificate if it is due (or `force`), install it."""
    return certificate.public_cert_ensure(force)
