"""`cloud manage create_account`: an account from the command line, the password from stdin
(never argv), checked by the site's validators, with the option or field named on refusal."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def create(monkeypatch: pytest.MonkeyPatch, password: str, *args: str) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    out = io.StringIO()
    call_command("create_account", *args, "--password-stdin", stdout=out)
    return out.getvalue()


def test_creates_an_active_account_with_the_password_from_stdin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "created account 'bob'" in create(monkeypatch, "Bob-pass-2024", "bob")
    user = User.objects.get(username="bob")
    assert user.is_active and not user.is_staff and user.check_password("Bob-pass-2024")


def test_staff_and_inactive_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    create(monkeypatch, "Carol-pass-2024", "carol", "--staff")
    create(monkeypatch, "Dave-pass-2024", "dave", "--inactive", "--email", "dave@example.com")
    assert User.objects.get(username="carol").is_staff
    dave = User.objects.get(username="dave")
    assert not dave.is_active and dave.email == "dave@example.com"


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("erin", "short", "password: This password is too short"),
        ("erin", "12345678901", "password: .*entirely numeric"),
        ("bad name!", "Erin-pass-2024", "username: Enter a valid username"),
        ("taken", "Erin-pass-2024", "username: an account with this username exists"),
    ],
)
def test_refuses_bad_input_with_the_field_named(
    monkeypatch: pytest.MonkeyPatch, username: str, password: str, message: str
) -> None:
    User.objects.create_user("taken")
    with pytest.raises(CommandError, match=message):
        create(monkeypatch, password, username)
    assert set(User.objects.values_list("username", flat=True)) == {"taken"}


def test_without_a_terminal_the_password_must_come_on_stdin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="password: give it on stdin with --password-stdin"):
        call_command("create_account", "frank")
    assert not User.objects.filter(username="frank").exists()
