"""The Home Console's dashboard (the cloud link as last checked, domains, tunnels) and the
health endpoint. The dashboard reads rows only: the link check runs in the worker."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from home.certs.models import CertStatus, Domain, JobState
from home.cloudlink.config import ConfigError
from home.cloudlink.models import LinkCheck, LinkState
from home.cloudlink.services import link
from home.tunnels.models import Tunnel, TunnelState

CHECK_LABELS = {
    "config": "cloudlink.yaml readable",
    "api": "Cloud API reachable",
    "token": "API token accepted",
    "ssh": "SSH tunnel preflight",
}


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    link_error = None
    current = None
    try:
        current = link()  # the parsed cloudlink.yaml, cached: no network
    except ConfigError as exc:
        link_error = str(exc)
    check = LinkCheck.current()
    soon = timezone.now() + dt.timedelta(days=settings.RENEW_DAYS)
    summary = Domain.objects.aggregate(
        domains=Count("pk"),
        certs_valid=Count("pk", filter=Q(cert_status=CertStatus.VALID)),
        certs_failed=Count("pk", filter=Q(cert_status=CertStatus.FAILED)),
        certs_due=Count("pk", filter=Q(cert_status=CertStatus.VALID, cert_expiry__lte=soon)),
        jobs_active=Count("pk", filter=Q(job_state__in=(JobState.PENDING, JobState.RUNNING))),
    )
    summary |= Tunnel.objects.filter(temporary=False).aggregate(
        entries=Count("pk"),
        tunnels_wanted=Count("pk", filter=Q(desired_open=True)),
        tunnels_open=Count("pk", filter=Q(state=TunnelState.OPEN)),
        tunnels_failed=Count("pk", filter=Q(state=TunnelState.FAILED)),
    )
    return render(
        request,
        "dashboard.html",
        {
            "link": current,
            "link_error": link_error,
            "check": check,
            "checks": [c | {"label": CHECK_LABELS.get(c["name"], c["name"])} for c in check.checks],
            "link_ok": check.state == LinkState.OK,
            # Until a first result (or a queued one) is in, the page follows /api/status.
            "live": check.state == LinkState.UNKNOWN or check.queued,
            "summary": summary,
            "domains": Domain.objects.annotate(entry_count=Count("entries"))[:20],
        },
    )


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
