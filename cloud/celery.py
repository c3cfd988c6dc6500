"""The cloud site's Celery app: provisioning, edge sync, domain checks and the reconcilers
beat runs."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloud.settings")

from celery.schedules import crontab
from celery.signals import worker_ready
from django.conf import settings

from workers.celery import make_app

app = make_app("cloud", "cloud.settings", settings.REDIS_URL)
app.autodiscover_tasks(["cloud.homes", "cloud.edge", "cloud.domains", "cloud.traffic"])
app.conf.beat_schedule = {
    "edge-sync": {"task": "cloud.edge.tasks.edge_sync", "schedule": 60.0},
    "homes-reconcile": {"task": "cloud.homes.tasks.homes_reconcile", "schedule": 300.0},
    # Each due domain check is its own task; this only finds them (backoff lives in the rows).
    "domains-due": {"task": "cloud.domains.tasks.domains_due", "schedule": 60.0},
    "names-reconcile": {"task": "cloud.domains.tasks.names_reconcile", "schedule": 300.0},
    # Renews inside the window (CLOUDATHOME_RENEW_DAYS), retries a failure after its backoff.
    "public-cert": {"task": "cloud.edge.tasks.public_cert_ensure", "schedule": crontab(minute=41)},
    "traffic-sample": {
        "task": "cloud.traffic.tasks.traffic_sample",
        "schedule": float(settings.TRAFFIC_SAMPLE_SECONDS),
        "options": {"expires": float(settings.TRAFFIC_SAMPLE_SECONDS)},
    },
}


@worker_ready.connect
def _reconcile_on_start(sender: object, **kwargs: object) -> None:
    """A worker killed mid-task may leave work half done; heal it as soon as one is back
    instead of waiting for the message's visibility timeout or the next beat."""
    app.send_task("cloud.homes.tasks.homes_reconcile")
    app.send_task("cloud.edge.tasks.edge_sync")
    app.send_task("cloud.domains.tasks.names_reconcile")
    # The public host's first certificate, while HAProxy serves the placeholder.
    app.send_task("cloud.edge.tasks.public_cert_ensure")
