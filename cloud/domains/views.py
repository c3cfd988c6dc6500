"""The dashboard's domain forms: each calls one service and says what happened."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from cloud.accounts.auth import current_user
from cloud.domains import services
from cloud.homes.models import Home
from workers.common.errors import DomainError


def _act(request: HttpRequest, action: str) -> None:
    home = Home.objects.filter(owner=current_user(request)).first()
    name = request.POST.get("name", "")
    if home is None:
        raise DomainError("register a home first")
    if action == "add":
        domain = services.domain_add(home, name)
        messages.success(
            request,
            f"{domain.name} added: create the TXT record {domain.record_name}, then Verify.",
        )
    elif action == "verify":
        services.domain_verify(services.domain_of(home, name))
        messages.success(request, "Checking the TXT record now.")
    else:
        services.domain_delete(services.domain_of(home, name))
        messages.success(request, "Domain deleted, with its mappings.")


def _view(action: str) -> Callable[[HttpRequest], HttpResponse]:
    @login_required
    @require_POST
    def view(request: HttpRequest) -> HttpResponse:
        try:
            _act(request, action)
        except DomainError as exc:
            messages.error(request, str(exc))
        return redirect("dashboard")

    return view


domain_add = _view("add")
domain_verify = _view("verify")
domain_delete = _view("delete")
