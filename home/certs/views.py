"""Pages of the domains: the list, the add form, and a domain's page with its certificate
job and its proxy entries. Each action calls one service; domain errors show next to the
field they name, or as a message."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from kombu.exceptions import OperationalError as QueueUnreachable

from home.certs import services
from home.certs.forms import DomainForm
from home.certs.models import Domain, JobState
from home.certs.schemas import job_steps
from home.cloudlink.config import ConfigError
from home.errors import show_on_form, unavailable_reason
from home.tunnels.models import TunnelState
from workers.common.errors import DomainError

ACTIVE_JOBS = (JobState.PENDING, JobState.WAITING, JobState.RUNNING)


@login_required
@require_GET
def domain_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "certs/list.html",
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
                data["post_renew_action"],
            )
        except DomainError as exc:
            show_on_form(form, exc)
        except QueueUnreachable as exc:
            messages.error(request, f"{data['name']}: {unavailable_reason(exc)}")
            return redirect("domains")
        else:
            messages.success(request, f"{domain.name} added; its certificate is being issued.")
            return redirect("domain-detail", pk=domain.pk)
    return render(request, "certs/add.html", {"form": form})


@login_required
@require_GET
def domain_detail(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_object_or_404(Domain, pk=pk)
    entries = list(domain.entries.select_related("tunnel", "tunnel__edge_traffic"))
    live = domain.job_state in ACTIVE_JOBS or any(
        e.tunnel.state == TunnelState.OPENING for e in entries
    )
    return render(
        request,
        "certs/detail.html",
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
        messages.error(request, f"Renewal: {unavailable_reason(exc)}")
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
@require_POST
def domain_verify(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_object_or_404(Domain, pk=pk)
    try:
        services.domain_check_name(domain)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The cloud is checking the TXT record now.")
    return redirect("domain-detail", pk=pk)
