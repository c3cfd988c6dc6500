"""`cloud manage seed_scale`: homes, mappings, accounts and tokens in bulk into the real
database, their SSH identities installed; running it again converges instead of adding, and
bad arguments stop it with the option named before anything is written."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from cloud.accounts.models import ApiToken
from cloud.edge import services as edge
from cloud.homes.models import Home, HomeStatus, ProxyMapping

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def single_account(settings: Any, tmp_path: Path) -> None:
    """Every home one line of one key file (the mode a load test uses); state of its own."""
    settings.SSH_MODE = "single-account"
    settings.SSH_ACCOUNT = "root"
    settings.STATE_DIR = tmp_path


def seed(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("seed_scale", *args, stdout=out)
    return dict(json.loads(out.getvalue()))


def seeded_homes() -> list[Home]:
    return list(Home.objects.filter(owner__username__startswith="seed-home-"))


def test_seeds_ready_homes_with_their_mappings_spread_and_identities_installed() -> None:
    summary = seed("--homes", "3", "--mappings", "7", "--first-host", "probe.scale.test")

    homes = seeded_homes()
    assert [h.status for h in homes] == [HomeStatus.READY] * 3
    assert {h.owner.username for h in homes if h.owner} == {f"seed-home-{n}" for n in range(3)}
    assert ProxyMapping.objects.count() == 7
    first = homes[0]
    assert summary["first_home"] == {
        "slug": first.slug,
        "owner": "seed-home-0",
        "port_base": first.port_base,
        "port_count": first.port_count,
    }
    assert summary["first_mapping"] == {"host": "probe.scale.test", "tunnel_port": first.port_base}
    # Mapping k on home k % 3, as its (k // 3)-th: 3 + 2 + 2.
    assert sorted(h.mappings.count() for h in homes) == [2, 2, 3]
    for m in ProxyMapping.objects.all():
        assert m.tunnel_port in m.home.ports and m.scheme == "https"
    assert edge.ssh_accounts().installed() == {h.identity for h in homes}
    for owner in User.objects.filter(username__startswith="seed-"):
        assert not owner.has_usable_password()


def test_running_it_again_changes_nothing_and_other_counts_converge() -> None:
    seed("--homes", "3", "--mappings", "7", "--accounts", "2")
    rows = {(m.pk, m.host, m.tunnel_port) for m in ProxyMapping.objects.all()}
    slugs = [h.slug for h in seeded_homes()]

    seed("--homes", "3", "--mappings", "7", "--accounts", "2")
    assert {(m.pk, m.host, m.tunnel_port) for m in ProxyMapping.objects.all()} == rows
    assert [h.slug for h in seeded_homes()] == slugs
    assert User.objects.filter(username__startswith="seed-account-").count() == 2

    summary = seed("--homes", "2", "--mappings", "1", "--accounts", "0")
    assert summary["homes"] == 2 and summary["accounts"] == []
    assert [h.slug for h in seeded_homes()] == slugs[:2]
    assert list(ProxyMapping.objects.values_list("host", flat=True)) == ["h0-0.scale.test"]
    assert Home.objects.filter(status=HomeStatus.FREE).count() == settings.HOME_SLOTS - 2
    assert edge.ssh_accounts().installed() == {h.identity for h in seeded_homes()}
    assert not User.objects.filter(username__in=["seed-home-2", "seed-account-0"]).exists()

    seed("--homes", "0", "--mappings", "0")
    assert not User.objects.filter(username__startswith="seed-").exists()
    assert Home.objects.filter(status=HomeStatus.FREE).count() == settings.HOME_SLOTS


def test_tokens_go_to_a_private_file_and_never_to_the_output(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.json"
    out = io.StringIO()
    args = ["--homes", "2", "--mappings", "2", "--accounts", "2", "--token-file", str(token_file)]
    call_command("seed_scale", *args, stdout=out)
    tokens = json.loads(token_file.read_text())
    assert set(tokens) == {"seed-home-0", "seed-account-0", "seed-account-1"}
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for username, token in tokens.items():
        assert token not in out.getvalue()
        found = ApiToken.objects.authenticate(token)
        assert found is not None and found.user.username == username

    seed(*args)
    assert ApiToken.objects.authenticate(tokens["seed-home-0"]) is None  # the earlier one: revoked
    assert ApiToken.objects.filter(user__username="seed-home-0").count() == 1


def _key() -> str:
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    return raw.decode()


def test_each_home_gets_its_line_of_the_key_file_wrapping_around(tmp_path: Path) -> None:
    keys = [_key(), _key()]
    key_file = tmp_path / "keys.pub"
    key_file.write_text("\n".join(keys) + "\n\n")
    seed("--homes", "3", "--mappings", "0", "--public-key-file", str(key_file))

    homes = sorted(seeded_homes(), key=lambda h: h.owner.username if h.owner else "")
    assert [h.public_key for h in homes] == [keys[0], keys[1], keys[0]]
    lines = (Path(settings.STATE_DIR) / "ssh" / "keys" / "root").read_text().splitlines()
    for home in homes:
        (line,) = [ln for ln in lines if ln.endswith(f"cloudathome:{home.identity}")]
        assert home.public_key in line


def test_an_empty_or_bad_key_file_names_the_option(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.pub"
    for text, reason in (("\n", "at least one key"), ("ssh-ed25519 AAAA\n", "public_key|key")):
        key_file.write_text(text)
        with pytest.raises(CommandError, match=f"--public-key-file: .*({reason})"):
            call_command(
                "seed_scale", "--homes", "1", "--mappings", "0", "--public-key-file", str(key_file)
            )
    assert not seeded_homes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--homes", "-1", "--mappings", "0"], "--homes"),
        (["--homes", "0", "--mappings", "3"], "--mappings: mappings need at least one home"),
        (["--homes", "11", "--mappings", "0"], "--homes: 10 free home slots for 11 new homes"),
        (["--homes", "1", "--mappings", "1", "--domain", "bad_domain"], "--domain:"),
        (["--homes", "1", "--mappings", "1", "--first-host", "x"], "--first-host:"),
        (["--homes", "1", "--mappings", "2", "--first-host", "h0-1.scale.test"], "--first-host:"),
    ],
)
def test_bad_arguments_name_the_option_and_write_nothing(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("seed_scale", *args)
    assert not User.objects.filter(username__startswith="seed-").exists()
    assert not ProxyMapping.objects.exists()


def test_a_real_account_or_a_foreign_mapping_is_never_overwritten(tmp_path: Path) -> None:
    User.objects.create_user("seed-home-0", password="a real one")
    with pytest.raises(CommandError, match="seed-home-0 exists and was not seeded"):
        call_command("seed_scale", "--homes", "1", "--mappings", "1")
    User.objects.filter(username="seed-home-0").delete()

    owner = User.objects.create_user("alice")
    home = Home.objects.get(index=9)
    Home.objects.filter(pk=home.pk).update(owner=owner, status=HomeStatus.READY, slug="alice")
    ProxyMapping.objects.create(home=home, host="h0-0.scale.test", tunnel_port=home.port_base)
    with pytest.raises(CommandError, match=r"h0-0\.scale\.test is mapped by a home that was not"):
        call_command("seed_scale", "--homes", "1", "--mappings", "1")
    assert ProxyMapping.objects.get().home == home
    assert not seeded_homes()
