"""The Celery app factory (workers.celery): every task of a site gets the defaults written
once in the app's configuration, and the reconciler base's retries."""

from __future__ import annotations

import pytest
from celery import Celery

from workers.celery import ReconcilerTask, TransientError, make_app
from workers.common.errors import ServiceUnavailable


@pytest.fixture(scope="module")
def app_and_task() -> tuple[Celery, ReconcilerTask]:
    app = make_app("testsite", "cloud.settings", "redis://127.0.0.1:6379/15")

    @app.task(name="testsite.reconcile")
    def reconcile(item_id: int) -> int:
        return item_id

    app.finalize()
    return app, app.tasks["testsite.reconcile"]


def test_tasks_get_json_late_acks_and_time_limits_from_the_app(
    app_and_task: tuple[Celery, ReconcilerTask],
) -> None:
    app, task = app_and_task
    assert isinstance(task, ReconcilerTask)
    assert (task.acks_late, task.reject_on_worker_lost) == (True, True)
    assert (task.soft_time_limit, task.time_limit) == (120, 150)
    assert task.serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_default_queue == "testsite"


def test_transient_errors_are_retried_with_backoff_and_jitter(
    app_and_task: tuple[Celery, ReconcilerTask],
) -> None:
    _, task = app_and_task
    assert TransientError in task.autoretry_for
    assert (task.retry_backoff, task.retry_backoff_max, task.retry_jitter) == (1, 60, True)
    assert task.max_retries == 8


def test_a_transient_error_is_a_503_for_the_api() -> None:
    assert issubclass(TransientError, ServiceUnavailable)
    assert TransientError("x").status == 503
