"""Workflows of home slots and proxy mappings: claim and release a slot, provision its SSH
identity, create and delete mappings. Each writes desired state, then hands the side
effects to a reconciler task after the commit."""

from __future__ import annotations

import logging
import re
import secrets
import string
from typing import Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from cloud.edge import haproxy, sshd
from cloud.edge import services as edge
from cloud.homes.models import Home, HomeStatus, ProxyMapping, Scheme
from workers.common.errors import Conflict, Invalid, NotFound, invalid_from

log = logging.getLogger(__name__)

_SLUG_ALPHABET = string.ascii_letters + string.digits


def _identity(index: int, username: str) -> str:
    clean = re.sub(r"[^a-z0-9_]", "", username.lower())[:16] or "user"
    return f"{settings.SSH_USER_PREFIX}{index:02d}_{clean}"


def _ours(identity: str) -> bool:
    """Identities of this cloud site (several sites may share one machine's users)."""
    return (
        re.fullmatch(rf"{re.escape(settings.SSH_USER_PREFIX)}\d{{2,}}_[a-z0-9_]*", identity)
        is not None
    )


def _after_commit_provision(home_id: int) -> None:
    from cloud.homes import tasks

    transaction.on_commit(lambda: tasks.home_provision.delay(home_id))


def _after_commit_edge_sync() -> None:
    from cloud.edge import tasks

    transaction.on_commit(lambda: tasks.edge_sync.delay())


def _after_commit_edge_update(host: str) -> None:
    from cloud.edge import tasks

    transaction.on_commit(lambda: tasks.edge_update.delay(host))


def home_of(user: User, slug: str) -> Home:
    """The caller's home by slug; someone else's home is as invisible as a missing one."""
    home = Home.objects.filter(slug=slug, owner=user).first() if slug else None
    if home is None:
        raise NotFound("no such home", field="slug")
    return home


def home_claim(user: User, public_key: str) -> Home:
    """Take a free slot for `user` atomically; provisioning continues in a task."""
    try:
        key = sshd.validate_public_key(public_key)
    except ValueError as exc:
        raise invalid_from(exc, "public_key") from None
    with transaction.atomic():
        if Home.objects.select_for_update().filter(owner=user).exists():
            raise Conflict("you already have a home; release it first", field="public_key")
        home = (
            Home.objects.select_for_update(skip_locked=True)
            .filter(status=HomeStatus.FREE, owner=None)
            .order_by("index")
            .first()
        )
        if home is None:
            raise Conflict("no free home slot left; ask an administrator for more slots")
        home.owner = user
        home.slug = "".join(secrets.choice(_SLUG_ALPHABET) for _ in range(14))
        home.public_key = key
        home.identity = _identity(home.index, user.get_username())
        home.ssh_username = (
            str(settings.SSH_ACCOUNT) if settings.SSH_MODE == "single-account" else home.identity
        )
        home.status = HomeStatus.PROVISIONING
        home.status_detail = "waiting for a worker"
        try:
            home.save()
        except IntegrityError:  # the OneToOne on owner: a concurrent claim by the same user
            raise Conflict(
                "you already have a home; release it first", field="public_key"
            ) from None
        _after_commit_provision(home.pk)
    return home


def home_provision(home_id: int) -> None:
    """Install the home's SSH identity. Idempotent; a failure leaves no key behind."""
    home = Home.objects.filter(pk=home_id).first()
    if home is None or home.status not in (HomeStatus.PROVISIONING, HomeStatus.READY):
        return
    accounts = edge.ssh_accounts()
    try:
        accounts.install(home.identity, home.public_key, list(home.ports))
    except Exception as exc:
        log.exception("provisioning %s failed", home)
        try:
            accounts.remove(home.identity)
        finally:
            Home.objects.filter(pk=home.pk, status=HomeStatus.PROVISIONING).update(
                status=HomeStatus.FAILED, status_detail=f"provisioning failed: {exc}"
            )
        return
    changed = Home.objects.filter(pk=home.pk, status=HomeStatus.PROVISIONING).update(
        status=HomeStatus.READY, status_detail=""
    )
    if changed:  # mappings created while provisioning only become routes now
        _after_commit_edge_sync()


def home_release(home: Home) -> None:
    """Remove every mapping, route and key of the home; the slot frees once the task ran."""
    with transaction.atomic():
        ProxyMapping.objects.filter(home=home).delete()
        Home.objects.filter(pk=home.pk).update(
            status=HomeStatus.RELEASING, status_detail="releasing", owner=None
        )
        from cloud.homes import tasks

        transaction.on_commit(lambda: tasks.home_finish_release.delay(home.pk))


def home_finish_release(home_id: int) -> None:
    home = Home.objects.filter(pk=home_id, status=HomeStatus.RELEASING).first()
    if home is None:
        return
    edge.edge_sync()  # routes of a releasing home are gone from the desired state
    if home.identity:
        edge.ssh_accounts().remove(home.identity)
    Home.objects.filter(pk=home.pk, status=HomeStatus.RELEASING).update(
        status=HomeStatus.FREE,
        status_detail="",
        slug=None,
        public_key="",
        identity="",
        ssh_username="",
    )


def homes_reconcile() -> dict[str, int]:
    """Converge sshd identities on the database: provision what should exist, finish
    releases, and remove identities that no home owns (crash, manual change)."""
    counts = {"provisioned": 0, "released": 0, "removed": 0}
    for home in Home.objects.filter(
        owner__isnull=False, status__in=[HomeStatus.PROVISIONING, HomeStatus.READY]
    ):
        home_provision(home.pk)
        counts["provisioned"] += 1
    for pk in Home.objects.filter(status=HomeStatus.RELEASING).values_list("pk", flat=True):
        home_finish_release(pk)
        counts["released"] += 1
    # An owner deleted by an administrator leaves a slot with no owner: release it.
    for pk in (
        Home.objects.filter(owner__isnull=True)
        .exclude(status=HomeStatus.FREE)
        .values_list("pk", flat=True)
    ):
        Home.objects.filter(pk=pk).update(status=HomeStatus.RELEASING)
        home_finish_release(pk)
        counts["released"] += 1
    wanted = set(
        Home.objects.filter(status__in=[HomeStatus.PROVISIONING, HomeStatus.READY]).values_list(
            "identity", flat=True
        )
    )
    accounts = edge.ssh_accounts()
    for identity in accounts.installed() - wanted:
        if _ours(identity):
            accounts.remove(identity)
        counts["removed"] += 1
    return counts


def _free_port(home: Home) -> int:
    used = set(ProxyMapping.objects.filter(home=home).values_list("tunnel_port", flat=True))
    for port in home.ports:
        if port not in used:
            return port
    raise Conflict("every tunnel port of this home is in use", field="tunnel_port")


EdgeState = Literal["routed", "pending", "unknown"]


def mappings_with_edge_state(home: Home) -> list[tuple[ProxyMapping, EdgeState]]:
    """Each mapping with what the live edge says of it: routed, pending or unknown."""
    mappings = list(home.mappings.all())
    try:
        live = {(r.host, r.scheme, r.port, r.proxy_protocol) for r in edge.edge_live_routes()}
    except haproxy.EdgeError:
        return [(m, "unknown") for m in mappings]
    routed: EdgeState = "routed"
    pending: EdgeState = "pending"
    return [
        (m, routed if (m.host, m.scheme, m.tunnel_port, m.proxy_protocol) in live else pending)
        for m in mappings
    ]


def mapping_create(
    home: Home, host: str, scheme: str, tunnel_port: int | None, proxy_protocol: bool
) -> ProxyMapping:
    """Validate, store, and let the edge sync route it (no reload)."""
    try:
        host = haproxy.validate_hostname(host)
    except ValueError as exc:
        raise invalid_from(exc, "host") from None
    if scheme not in Scheme.values:
        raise Invalid("must be 'https' or 'http'", field="scheme")
    if home.status not in (HomeStatus.READY, HomeStatus.PROVISIONING):
        raise Conflict(f"home is {home.status}; mappings need a ready home", field="home")
    with transaction.atomic():
        Home.objects.select_for_update().filter(pk=home.pk).first()  # serialize port picking
        port = _free_port(home) if tunnel_port is None else tunnel_port
        if port not in home.ports:
            raise Invalid(
                f"{port} is outside this home's range {home.port_base}-{home.ports[-1]}",
                field="tunnel_port",
            )
        taken = ProxyMapping.objects.filter(host=host)
        if taken.exclude(home=home).exists():
            raise Conflict("this hostname belongs to another home", field="host")
        if taken.filter(scheme=scheme).exists():
            raise Conflict(f"this hostname already has an {scheme} mapping", field="host")
        try:
            with transaction.atomic():
                mapping = ProxyMapping.objects.create(
                    home=home,
                    host=host,
                    scheme=scheme,
                    tunnel_port=port,
                    proxy_protocol=proxy_protocol,
                )
        except IntegrityError:
            raise Conflict("this hostname is already mapped", field="host") from None
        _after_commit_edge_update(host)
    return mapping


def mapping_delete(home: Home, host: str, scheme: str | None = None) -> None:
    """Delete the host's mappings of this home (only the one of `scheme` when given)."""
    with transaction.atomic():
        rows = ProxyMapping.objects.filter(home=home, host=host.lower())
        if scheme is not None:
            rows = rows.filter(scheme=scheme)
        deleted, _ = rows.delete()
        if not deleted:
            raise NotFound("no such mapping", field="host")
        _after_commit_edge_update(host.lower())
