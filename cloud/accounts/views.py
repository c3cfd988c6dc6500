"""Signup (inactive until approved), login/logout and API tokens pages."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from cloud.accounts import services
from cloud.accounts.auth import current_user
from cloud.accounts.forms import SignupForm, TokenForm
from cloud.accounts.models import ApiToken


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.user_signup(
            form.cleaned_data["username"],
            form.cleaned_data["email"],
            form.cleaned_data["password1"],
        )
        return render(
            request, "accounts/signup_done.html", {"username": form.cleaned_data["username"]}
        )
    return render(request, "accounts/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    new_token = None
    if request.method == "POST":
        if "revoke" in request.POST:
            ApiToken.objects.filter(
                user=current_user(request), pk=request.POST.get("revoke", "")
            ).delete()
            messages.success(request, "Token revoked.")
            return redirect("tokens")
        if form.is_valid():
            _, new_token = ApiToken.issue(current_user(request), form.cleaned_data["name"])
    return render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "new_token": new_token,
            "tokens": current_user(request).api_tokens.order_by("-created"),
        },
    )
