"""Pages of the Home Console: dashboard (cloud link and its checks), domains with their
certificate job, proxy entries with their tunnels. Each action calls one service and
shows domain errors next to the field they name."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.forms import Form
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from kombu.exceptions import OperationalError as QueueUnreachable

from home.cloudlink.config import ConfigError
from home.cloudlink.services import link, link_status
from home.domains import services
from home.domains.forms import DomainForm, EntryForm
from home.domains.models import CertStatus, Domain, JobState, ProxyEntry
from home.domains.schemas import job_steps
from home.tunnels import services as tunnels
from home.tunnels.models import Tunnel, TunnelState
from workers.common.errors import DomainError

ACTIVE_JOBS = (JobState.PENDING, JobState.RUNNING)
# Tasks are sent after the commit: when the broker is down the change is saved anyway.
QUEUE_DOWN = "saved, but the task queue cannot be reached ({}); its background work is not queued"
CHECK_LABELS = {
    "api": "Cloud API reachable",
    "token": "API token accepted",
    "ssh": "SSH tunnel preflight",
}


def _add_error(form: Form, exc: DomainError | ConfigError) -> None:
    field = getattr(exc, "field", None)
    form.add_error(field if field in form.fields else None, getattr(exc, "message", str(exc)))


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    link_error = None
    current = None
    checks: list[dict[str, object]] = []
    try:
        current = link()
        try:
            port: int | None = tunnels.allocate_port()
        except tunnels.NoFreePort:
            port = None
        checks = [
            {
                "name": c.name,
                "label": CHECK_LABELS.get(c.name, c.name),
                "ok": c.ok,
                "detail": c.detail,
            }
            for c in link_status(port)
        ]
    except ConfigError as exc:
        link_error = str(exc)
    soon = timezone.now() + dt.timedelta(days=settings.RENEW_DAYS)
    summary = Domain.objects.aggregate(
        domains=Count("pk"),
        certs_valid=Count("pk", filter=Q(cert_status=CertStatus.VALID)),
        certs_failed=Count("pk", filter=Q(cert_status=CertStatus.FAILED)),
        certs_due=Count("pk", filter=Q(cert_status=CertStatus.VALID, cert_expiry__lte=soon)),
        jobs_active=Count("pk", filter=Q(job_state__in=ACTIVE_JOBS)),
    )
    summary |= Tunnel.objects.filter(temporary=False).aggregate(
        entries=Count("pk"),
        tunnels_wanted=Count("pk", filter=Q(desired_open=True)),
        tunnels_open=Count("pk", filter=Q(state=TunnelState.OPEN)),
        tunnels_failed=Count("pk", filter=Q(state=TunnelState.FAILED)),
    )
    return render(
        request,
        "domains/dashboard.html",
        {
            "link": current,
            "link_error": link_error,
            "checks": checks,
            "link_ok": bool(checks) and all(c["ok"] for c in checks),
            "summary": summary,
            "domains": Domain.objects.annotate(entry_count=Count("entries"))[:20],
        },
    )


@login_required
@require_GET
def domain_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "domains/list.html",
        {
            "domains": Domain.objects.annotate(entry_count=Count("entries")),
            "renew_days": settings.RENEW_DAYS,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def domain_add(request: HttpRequest) -> HttpResponse:
    form = DomainForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            domain = services.domain_create(
                data["name"],
                data["email"],
                data["cert_dir"],
                data["challenge"],
                services.parse_command(data["post_renew_command"]),
            )
        except DomainError as exc:
            _add_error(form, exc)
        except QueueUnreachable as exc:
            messages.error(request, f"{data['name']}: {QUEUE_DOWN.format(exc)}")
            return redirect("domains")
        else:
            messages.success(request, f"{domain.name} added; its certificate is being issued.")
            return redirect("domain-detail", pk=domain.pk)
    return render(request, "domains/add.html", {"form": form})


@login_required
@require_GET
def domain_detail(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_object_or_404(Domain, pk=pk)
    entries = list(domain.entries.select_related("tunnel"))
    live = domain.job_state in ACTIVE_JOBS or any(
        e.tunnel.state == TunnelState.OPENING for e in entries
    )
    return render(
        request,
        "domains/detail.html",
        {
            "domain": domain,
            "entries": entries,
            "steps": job_steps(domain.job_state, domain.job_step),
            "live": live,
        },
    )


@login_required
@require_POST
def domain_renew(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_object_or_404(Domain, pk=pk)
    try:
        services.domain_renew(domain)
    except DomainError as exc:
        messages.error(request, exc.message)
    except QueueUnreachable as exc:
        messages.error(request, f"Renewal {QUEUE_DOWN.format(exc)}")
    else:
        messages.success(request, "Renewal queued.")
    return redirect("domain-detail", pk=pk)


@login_required
@require_POST
def domain_delete(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_object_or_404(Domain, pk=pk)
    try:
        services.domain_delete(domain)
    except (DomainError, ConfigError) as exc:
        messages.error(request, f"{domain.name} was not deleted: {exc}")
        return redirect("domain-detail", pk=pk)
    messages.success(request, f"{domain.name} deleted; its certificate files were left in place.")
    return redirect("domains")


@login_required
@require_http_methods(["GET", "POST"])
def entry_add(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_object_or_404(Domain, pk=pk)
    form = EntryForm(request.POST or None, initial={"hostname": domain.name})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            entry = services.entry_create(
                domain, data["hostname"], data["home_port"], data["proxy_protocol"]
            )
        except (DomainError, ConfigError) as exc:
            _add_error(form, exc)
        else:
            messages.success(request, f"{entry.hostname} mapped; open its tunnel to publish it.")
            return redirect("domain-detail", pk=domain.pk)
    return render(request, "domains/entry_add.html", {"form": form, "domain": domain})


@login_required
@require_POST
def entry_tunnel(request: HttpRequest, pk: int) -> HttpResponse:
    entry = get_object_or_404(ProxyEntry.objects.select_related("tunnel"), pk=pk)
    open_ = request.POST.get("open") == "1"
    try:
        services.entry_tunnel(entry, open_)
    except QueueUnreachable as exc:
        messages.error(request, f"Tunnel change {QUEUE_DOWN.format(exc)}")
        return redirect("domain-detail", pk=entry.domain_id)
    messages.success(request, f"Tunnel of {entry.hostname} {'opening' if open_ else 'closing'}.")
    return redirect("domain-detail", pk=entry.domain_id)


@login_required
@require_POST
def entry_delete(request: HttpRequest, pk: int) -> HttpResponse:
    entry = get_object_or_404(ProxyEntry.objects.select_related("tunnel"), pk=pk)
    try:
        services.entry_delete(entry)
    except (DomainError, ConfigError) as exc:
        messages.error(request, f"{entry.hostname} was not deleted: {exc}")
    else:
        messages.success(request, f"{entry.hostname} deleted; its tunnel is stopped.")
    return redirect("domain-detail", pk=entry.domain_id)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
