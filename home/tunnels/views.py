"""Pages of the proxy entries: add one under a domain, open or close its tunnel, delete it.
Each action calls one service and goes back to the domain's page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from kombu.exceptions import OperationalError as QueueUnreachable

from home.certs.models import Domain
from home.cloudlink.config import ConfigError
from home.errors import show_on_form, unavailable_reason
from home.tunnels import services
from home.tunnels.forms import AllowForm, EntryForm
from home.tunnels.models import ProxyEntry
from workers.common import networks
from workers.common.errors import DomainError


@login_required
@require_http_methods(["GET", "POST"])
def entry_add(request: HttpRequest, pk: int) -> HttpResponse:
    domain = get_object_or_404(Domain, pk=pk)
    form = EntryForm(request.POST or None, initial={"hostname": domain.name})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            entry = services.entry_create(
                domain,
                data["hostname"],
                data["home_port"],
                data["proxy_protocol"],
                data["scheme"],
                networks.split(data["allow"]),
            )
        except (DomainError, ConfigError) as exc:
            show_on_form(form, exc)
        else:
            messages.success(request, f"{entry.label} mapped; open its tunnel to publish it.")
            return redirect("domain-detail", pk=domain.pk)
    return render(request, "tunnels/entry_add.html", {"form": form, "domain": domain})


@login_required
@require_POST
def entry_tunnel(request: HttpRequest, pk: int) -> HttpResponse:
    entry = get_object_or_404(ProxyEntry.objects.select_related("tunnel"), pk=pk)
    open_ = request.POST.get("open") == "1"
    try:
        services.entry_tunnel(entry, open_)
    except QueueUnreachable as exc:
        messages.error(request, f"Tunnel change: {unavailable_reason(exc)}")
        return redirect("domain-detail", pk=entry.domain_id)
    messages.success(request, f"Tunnel of {entry.label} {'opening' if open_ else 'closing'}.")
    return redirect("domain-detail", pk=entry.domain_id)


@login_required
@require_POST
def entry_delete(request: HttpRequest, pk: int) -> HttpResponse:
    entry = get_object_or_404(ProxyEntry.objects.select_related("tunnel"), pk=pk)
    try:
        services.entry_delete(entry)
    except (DomainError, ConfigError) as exc:
        messages.error(request, f"{entry.label} was not deleted: {exc}")
    else:
        messages.success(request, f"{entry.label} deleted; its tunnel is stopped.")
    return redirect("domain-detail", pk=entry.domain_id)


@login_required
@require_POST
def entry_allow(request: HttpRequest, pk: int) -> HttpResponse:
    entry = get_object_or_404(ProxyEntry, pk=pk)
    form = AllowForm(request.POST)
    try:
        if not form.is_valid():
            raise DomainError("the allowlist is too long", field="allow")
        services.entry_allow(entry, networks.split(form.cleaned_data["allow"]))
    except (DomainError, ConfigError) as exc:
        messages.error(request, f"Allowed networks of {entry.label} not saved: {exc}")
    else:
        messages.success(request, f"Allowed networks of {entry.label} saved.")
    return redirect("domain-detail", pk=entry.domain_id)
