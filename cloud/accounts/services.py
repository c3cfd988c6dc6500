"""Account workflows: creating accounts (self-signup stays inactive until an administrator
approves it) and tokens."""

from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest

from cloud.accounts.models import ApiToken
from workers.common import throttle
from workers.common.errors import Conflict, Forbidden, Invalid


def token_issue(request: HttpRequest, username: str, password: str, name: str) -> str:
    """A new API token for valid, active credentials; the plain token is returned once.

    Every refusal costs one password hash, as a success does, so the time taken does not tell
    which usernames exist or are inactive; the check for a lock-out comes before any hash.
    """
    throttle.check_allowed(request, username)
    candidate = get_user_model().objects.filter(username=username).first()
    if candidate is not None and not candidate.is_active:
        # authenticate() would hash and refuse it, and we could not say why without a
        # second hash; so one hash here, counted as the failure it is.
        correct = candidate.check_password(password)
        throttle.record_failure(request, username)
        if correct:
            raise Forbidden("account is not active yet; an administrator must approve it")
        raise Forbidden("invalid username or password")
    user = authenticate(request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):
        raise throttle.lockout_error()
    if user is None:
        raise Forbidden("invalid username or password")
    throttle.record_success(request, user)
    _, token = ApiToken.issue(user, name)
    return token


def user_create(
    username: str, password: str, email: str = "", *, active: bool = True, staff: bool = False
) -> AbstractBaseUser:
    """A new account, its username and password checked by the site's validators first."""
    User = get_user_model()
    candidate = User(username=username, email=email)
    try:
        User.username_validator(username)
    except ValidationError as exc:
        raise Invalid(" ".join(exc.messages), field="username") from None
    try:
        validate_password(password, candidate)
    except ValidationError as exc:
        raise Invalid(" ".join(exc.messages), field="password") from None
    try:
        with transaction.atomic():
            user = User.objects.create_user(username=username, email=email, password=password)
            user.is_active, user.is_staff = active, staff
            user.save(update_fields=["is_active", "is_staff"])
    except IntegrityError:
        raise Conflict("an account with this username exists", field="username") from None
    return user


def user_signup(username: str, email: str, password: str) -> AbstractBaseUser:
    return user_create(username, password, email, active=False)
