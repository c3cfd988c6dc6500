"""The Home Console's Celery app: certificates, tunnels and their beat-driven reconcilers."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "home.settings")

from celery.schedules import crontab
from celery.signals import worker_ready
from django.conf import settings

from workers.celery import make_app

app = make_app("home", "home.settings", settings.REDIS_URL)
app.autodiscover_tasks(["home.tunnels", "home.certs"])
app.conf.beat_schedule = {
    "tunnels-supervise": {
        "task": "home.tunnels.tasks.tunnels_supervise",
        "schedule": float(settings.TUNNEL_SUPERVISE_SECONDS),
        "options": {"expires": float(settings.TUNNEL_SUPERVISE_SECONDS) * 2},
    },
    "certificates-renew": {
        "task": "home.certs.tasks.certificates_renew",
        "schedule": crontab(minute=17),
    },
    "certificates-recover": {"task": "home.certs.tasks.certificates_recover", "schedule": 300.0},
}


@worker_ready.connect
def _recover_on_start(sender: object, **kwargs: object) -> None:
    """A worker killed mid-flow leaves temporary tunnels/mappings; clean them up now."""
    app.send_task("home.certs.tasks.certificates_recover")
    app.send_task("home.tunnels.tasks.tunnels_supervise")
