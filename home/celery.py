"""The Home Console's Celery app: certificates, tunnels, the cloud link check and their
beat-driven reconcilers."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "home.settings")

from celery.schedules import crontab
from celery.signals import worker_ready
from django.conf import settings

from workers.celery import make_app

app = make_app("home", "home.settings", settings.REDIS_URL)
app.autodiscover_tasks(["home.tunnels", "home.certs", "home.cloudlink", "home.traffic"])
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
    "certificates-waiting": {
        "task": "home.certs.tasks.certificates_waiting",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    },
    "link-check": {
        "task": "home.cloudlink.tasks.link_check",
        "schedule": float(settings.LINK_CHECK_SECONDS),
        "options": {"expires": float(settings.LINK_CHECK_SECONDS)},
    },
    "traffic-refresh": {
        "task": "home.traffic.tasks.traffic_refresh",
        "schedule": float(settings.TRAFFIC_REFRESH_SECONDS),
        "options": {"expires": float(settings.TRAFFIC_REFRESH_SECONDS)},
    },
}


@worker_ready.connect
def _recover_on_start(sender: object, **kwargs: object) -> None:
    """A worker killed mid-flow leaves temporary tunnels/mappings; clean them up now. The
    dashboard gets its first link check now too, not one period after start."""
    app.send_task("home.certs.tasks.certificates_recover")
    app.send_task("home.tunnels.tasks.tunnels_supervise")
    app.send_task("home.cloudlink.tasks.link_check")
