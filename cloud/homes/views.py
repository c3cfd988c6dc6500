"""Dashboard and forms of the cloud UI; each form calls one service and shows domain
errors next to the field they name."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.forms import Form
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from cloud.accounts.auth import current_user
from cloud.domains import services as names
from cloud.homes import services
from cloud.homes.forms import AllowForm, MappingForm, RegisterHomeForm
from cloud.homes.models import Home
from workers.common import networks
from workers.common.errors import DomainError


def _add_error(form: Form, exc: DomainError) -> None:
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, exc.message)


def _home_of(request: HttpRequest) -> Home | None:
    return Home.objects.filter(owner=current_user(request)).first()


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    home = _home_of(request)
    return render(
        request,
        "homes/dashboard.html",
        {
            "home": home,
            "mappings": services.mappings_with_state(home) if home else [],
            "domains": list(home.domains.all()) if home else [],
            "base_domain": names.base_domain(home) if home else None,
            "ssh_host": settings.PUBLIC_HOST,
            "public_host": settings.PUBLIC_HOST,
            "ssh_port": settings.SSH_PORT,
            "register_form": RegisterHomeForm(),
            "mapping_form": MappingForm(),
        },
    )


@login_required
def register(request: HttpRequest) -> HttpResponse:
    form = RegisterHomeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.home_claim(
                current_user(request),
                form.cleaned_data["public_key"],
                form.cleaned_data["label"] or None,
            )
        except DomainError as exc:
            _add_error(form, exc)
        else:
            messages.success(request, "Home registered; its SSH identity is being provisioned.")
            return redirect("dashboard")
    return render(request, "homes/register.html", {"form": form})


@login_required
def mapping_add(request: HttpRequest) -> HttpResponse:
    home = _home_of(request)
    if home is None:
        messages.error(request, "Register a home first.")
        return redirect("dashboard")
    form = MappingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            mapping = services.mapping_create(
                home,
                data["host"],
                data["scheme"],
                data["tunnel_port"],
                data["proxy_protocol"],
                data["public_port"],
                networks.split(data["allow"]),
            )
        except DomainError as exc:
            _add_error(form, exc)
        else:
            messages.success(request, f"Mapping {mapping} added.")
            return redirect("dashboard")
    return render(
        request,
        "homes/mapping_add.html",
        {"form": form, "home": home, "tcp_ports": settings.TCP_PORTS},
    )


@login_required
@require_POST
def mapping_delete(request: HttpRequest) -> HttpResponse:
    home = _home_of(request)
    try:
        if home is None:
            raise DomainError("no home")
        services.mapping_delete(home, request.POST.get("host", ""), request.POST.get("scheme"))
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Mapping deleted.")
    return redirect("dashboard")


@login_required
@require_POST
def mapping_allow(request: HttpRequest) -> HttpResponse:
    """Replace one mapping's allowlist from the dashboard's row form."""
    home = _home_of(request)
    form = AllowForm(request.POST)
    try:
        if home is None:
            raise DomainError("no home")
        if not form.is_valid():
            raise DomainError("the allowlist form is incomplete", field="allow")
        data = form.cleaned_data
        services.mapping_allow(home, data["host"], data["scheme"], networks.split(data["allow"]))
    except DomainError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Allowed networks saved; the edge applies them now.")
    return redirect("dashboard")


@login_required
@require_POST
def release(request: HttpRequest) -> HttpResponse:
    home = _home_of(request)
    if home is not None:
        services.home_release(home)
        messages.success(request, "Home released: its mappings, routes and SSH key are removed.")
    return redirect("dashboard")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
