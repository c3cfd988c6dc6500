"""The dashboard's "Check now" button: queue a link check and go back to the dashboard,
which follows it until the result is in."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from kombu.exceptions import OperationalError as QueueUnreachable

from home.cloudlink import services
from home.errors import unavailable_reason


@login_required
@require_POST
def link_check_now(request: HttpRequest) -> HttpResponse:
    try:
        services.link_check_queue()
    except QueueUnreachable as exc:
        messages.error(request, f"Link check: {unavailable_reason(exc)}")
    else:
        messages.success(request, "Link check queued.")
    return redirect("dashboard")
