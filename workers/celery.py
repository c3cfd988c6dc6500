"""Celery app factory with the defaults every task of both sites relies on, written once in
its configuration: JSON only, late acks, prefetch 1, time limits; and a task base that retries
transient errors with backoff and jitter."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task

from workers.common.errors import ServiceUnavailable


class TransientError(ServiceUnavailable):
    """Raised by services for failures worth retrying (a component is restarting, a lock is
    held, a network call timed out); an API call that meets one answers 503."""


class ReconcilerTask(Task):
    """Every task is a reconciler: idempotent, retried with backoff on transient errors. Late
    acks and time limits come from the app's configuration (make_app), the one place for them."""

    autoretry_for = (TransientError, ConnectionError, TimeoutError)
    retry_backoff = 1
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 8


def make_app(site: str, settings_module: str, broker_url: str) -> Celery:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    app = Celery(site, task_cls=ReconcilerTask)
    conf: dict[str, Any] = {
        "broker_url": broker_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": 120,
        "task_time_limit": 150,
        "task_default_queue": site,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": 300},
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
    }
    app.conf.update(conf)
    # Every task's run is timed into the site's Redis (its signal handlers connect on import;
    # imported here because that module needs the locks, which need this one).
    from workers.common import metrics  # noqa: F401

    return app
