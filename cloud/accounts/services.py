"""Account workflows: self-signup (inactive until an administrator approves) and tokens."""

from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest

from cloud.accounts.models import ApiToken
from workers.common.errors import Forbidden


def token_issue(request: HttpRequest, username: str, password: str, name: str) -> str:
    """A new API token for valid, active credentials; the plain token is returned once."""
    user = authenticate(request, username=username, password=password)
    if user is None:
        # ModelBackend refuses inactive users too; tell them apart without leaking which
        # usernames exist for wrong passwords.
        User = get_user_model()
        candidate = User.objects.filter(username=username).first()
        if candidate and not candidate.is_active and candidate.check_password(password):
            raise Forbidden("account is not active yet; an administrator must approve it")
        raise Forbidden("invalid username or password")
    _, token = ApiToken.issue(user, name)
    return token


def user_signup(username: str, email: str, password: str) -> AbstractBaseUser:
    User = get_user_model()
    user = User.objects.create_user(username=username, email=email, password=password)
    user.is_active = False
    user.save(update_fields=["is_active"])
    return user
