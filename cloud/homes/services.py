"""Workflows of home slots and proxy mappings: claim and release a slot, provision its SSH
identity, create and delete mappings (only under names the home owns: cloud.domains).
Each writes desired state, then hands the side effects to a reconciler task after the
commit. Also seeds homes and mappings in bulk for load tests (`seed_scale`)."""

from __future__ import annotations

import logging
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from cloud.accounts.models import ApiToken
from cloud.domains import services as names
from cloud.edge import haproxy, sshd
from cloud.edge import services as edge
from cloud.homes.models import Home, HomeStatus, ProxyMapping, Scheme
from cloud.traffic.services import Traffic, traffic_forget, traffic_of
from workers.common.errors import Conflict, Invalid, NotFound, invalid_from
from workers.common.metrics import Timing, timed
from workers.common.names import validate_hostname
from workers.common.networks import validate_networks

log = logging.getLogger(__name__)

HOME_PROVISION = Timing(
    "cloudathome_home_provision_seconds",
    "Installing a home's SSH identity (its user or key line) for our sshd",
    ("outcome",),
)

_SLUG_ALPHABET = string.ascii_letters + string.digits


def _identity(index: int, username: str) -> str:
    clean = re.sub(r"[^a-z0-9_]", "", username.lower())[:16] or "user"
    return f"{settings.SSH_USER_PREFIX}{index:02d}_{clean}"


def _assign(home: Home, user: User, public_key: str) -> None:
    """Give a free slot to `user`: a new slug and the SSH identity its key will be installed as."""
    home.owner = user
    home.slug = "".join(secrets.choice(_SLUG_ALPHABET) for _ in range(14))
    home.public_key = public_key
    home.identity = _identity(home.index, user.get_username())
    home.ssh_username = (
        str(settings.SSH_ACCOUNT) if settings.SSH_MODE == "single-account" else home.identity
    )


# What a released slot looks like again.
_FREE_SLOT = {
    "status": HomeStatus.FREE,
    "status_detail": "",
    "slug": None,
    "public_key": "",
    "identity": "",
    "ssh_username": "",
    "label": None,
}


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


def home_claim(user: User, public_key: str, label: str | None = None) -> Home:
    """Take a free slot for `user` atomically, with its label under the base domain (`label`
    or one derived from the user name); provisioning continues in a task."""
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
        _assign(home, user, key)
        home.status = HomeStatus.PROVISIONING
        home.status_detail = "waiting for a worker"
        home.label = names.label_choose(home, user, label)
        try:
            with transaction.atomic():
                home.save()
        except IntegrityError:
            # The OneToOne on owner (a concurrent claim by the same user) or the unique label.
            if Home.objects.filter(owner=user).exists():
                raise Conflict(
                    "you already have a home; release it first", field="public_key"
                ) from None
            raise Conflict("this label was taken meanwhile; try again", field="label") from None
        _after_commit_provision(home.pk)
    names.label_claim(home)
    return home


def home_provision(home_id: int) -> None:
    """Install the home's SSH identity. Idempotent; a failure leaves no key behind."""
    home = Home.objects.filter(pk=home_id).first()
    if home is None or home.status not in (HomeStatus.PROVISIONING, HomeStatus.READY):
        return
    accounts = edge.ssh_accounts()
    try:
        with timed(HOME_PROVISION):
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
        names.home_names_release(home)
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
    # Its sessions are gone, so are the connections through its ports: what its routes
    # carried is not the next owner's to see.
    traffic_forget(home.ports)
    with transaction.atomic():
        names.home_names_release(home)  # a label claimed while the release began
        Home.objects.filter(pk=home.pk, status=HomeStatus.RELEASING).update(**_FREE_SLOT)


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
        live = {
            (r.key, r.scheme, r.port, r.proxy_protocol, bool(r.allow))
            for r in edge.edge_live_routes()
        }
    except haproxy.EdgeError:
        return [(m, "unknown") for m in mappings]
    routed: EdgeState = "routed"
    pending: EdgeState = "pending"
    return [(m, routed if _live_key(m) in live else pending) for m in mappings]


def _live_key(m: ProxyMapping) -> tuple[str, str, int, bool, bool]:
    key = str(m.public_port) if m.scheme == Scheme.TCP else m.host
    return (key, m.scheme, m.tunnel_port, m.proxy_protocol, bool(m.allow))


@dataclass(frozen=True)
class MappingState:
    """A mapping with what the live edge says of it and what its tunnel port carried."""

    mapping: ProxyMapping
    edge: EdgeState
    traffic: Traffic


def mappings_with_state(home: Home) -> list[MappingState]:
    """Every mapping of the home with its edge state and its traffic, for the API and the
    dashboard."""
    pairs = mappings_with_edge_state(home)
    traffic = traffic_of(m.tunnel_port for m, _ in pairs)
    return [MappingState(m, state, traffic[m.tunnel_port]) for m, state in pairs]


def mapping_state(mapping: ProxyMapping) -> MappingState:
    """A mapping just created: not routed yet, with what its port carried so far."""
    return MappingState(mapping, "pending", traffic_of([mapping.tunnel_port])[mapping.tunnel_port])


def _networks(allow: list[str] | None) -> list[str]:
    try:
        return validate_networks(allow or [], "allow")
    except ValueError as exc:
        raise invalid_from(exc, "allow") from None


def _tcp_ports() -> range:
    if settings.TCP_PORTS is None:
        raise Invalid("this cloud publishes no tcp ports (CLOUDATHOME_TCP_PORTS)", field="scheme")
    first, last = settings.TCP_PORTS
    return range(first, last + 1)


def _public_port(home: Home, wanted: int | None) -> int:
    """The public port a new tcp mapping of `home` gets: `wanted`, or the lowest free one.
    The caller holds the home's row lock; the unique column settles a race between homes."""
    ports = _tcp_ports()
    held = ProxyMapping.objects.filter(home=home, scheme=Scheme.TCP).count()
    if held >= settings.TCP_PORTS_PER_HOME:
        raise Conflict(
            f"this home holds {held} tcp ports, its quota (CLOUDATHOME_TCP_PORTS_PER_HOME)",
            field="public_port",
        )
    taken = set(
        ProxyMapping.objects.filter(public_port__isnull=False).values_list("public_port", flat=True)
    )
    if wanted is not None:
        if wanted not in ports:
            raise Invalid(
                f"{wanted} is outside the cloud's tcp ports {ports[0]}-{ports[-1]}",
                field="public_port",
            )
        if wanted in taken:
            raise Conflict(f"public port {wanted} is taken", field="public_port")
        return wanted
    for port in ports:
        if port not in taken:
            return port
    raise Conflict("every public tcp port of this cloud is taken", field="public_port")


def mapping_create(
    home: Home,
    host: str,
    scheme: str,
    tunnel_port: int | None,
    proxy_protocol: bool,
    public_port: int | None = None,
    allow: list[str] | None = None,
) -> ProxyMapping:
    """Validate, store, and let the edge route it (no reload). A tcp mapping has no host; it
    gets a public port (`public_port`, or the lowest free one) within the home's quota."""
    if scheme not in Scheme.values:
        raise Invalid("must be 'https', 'http' or 'tcp'", field="scheme")
    if scheme == Scheme.TCP:
        if host:
            raise Invalid("a tcp mapping has no hostname; leave it empty", field="host")
        _tcp_ports()
    else:
        try:
            host = validate_hostname(host)
        except ValueError as exc:
            raise invalid_from(exc, "host") from None
        if public_port is not None:
            raise Invalid("only a tcp mapping has a public port", field="public_port")
    networks = _networks(allow)
    if home.status not in (HomeStatus.READY, HomeStatus.PROVISIONING):
        raise Conflict(f"home is {home.status}; mappings need a ready home", field="home")
    with transaction.atomic():
        Home.objects.select_for_update().filter(pk=home.pk).first()  # serialize port picking
        if scheme != Scheme.TCP:
            names.claim_covering(home, host)  # 403 unless the home owns the name; held to commit
        port = _free_port(home) if tunnel_port is None else tunnel_port
        if port not in home.ports:
            raise Invalid(
                f"{port} is outside this home's range {home.port_base}-{home.ports[-1]}",
                field="tunnel_port",
            )
        if scheme == Scheme.TCP:
            public_port = _public_port(home, public_port)
        else:
            taken = ProxyMapping.objects.filter(host=host).exclude(scheme=Scheme.TCP)
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
                    public_port=public_port,
                    allow=networks,
                )
        except IntegrityError:
            if scheme == Scheme.TCP:
                raise Conflict(
                    f"public port {public_port} was taken meanwhile; try again",
                    field="public_port",
                ) from None
            raise Conflict("this hostname is already mapped", field="host") from None
        _after_commit_edge(mapping)
    return mapping


def _after_commit_edge(*mappings: ProxyMapping, had_allow: bool = False) -> None:
    """A plain name's routes converge alone, in a lookup's time; a tcp route or an allowlist,
    now or before (the edge shares its grants between routes), takes a full sync."""
    if had_allow or any(m.scheme == Scheme.TCP or m.allow for m in mappings):
        _after_commit_edge_sync()
    else:
        for host in {m.host for m in mappings}:
            _after_commit_edge_update(host)


def _mappings_of(home: Home, key: str, scheme: str | None) -> list[ProxyMapping]:
    """The home's mappings a path names: a hostname's (only `scheme`'s when given), or with
    scheme tcp the one of that public port."""
    if scheme == Scheme.TCP:
        rows = ProxyMapping.objects.filter(
            home=home, scheme=Scheme.TCP, public_port=int(key) if key.isdigit() else -1
        )
    else:
        try:
            host = validate_hostname(key)
        except ValueError:
            raise NotFound("no such mapping", field="host") from None  # never stored, so none
        rows = ProxyMapping.objects.filter(home=home, host=host).exclude(scheme=Scheme.TCP)
        if scheme is not None:
            rows = rows.filter(scheme=scheme)
    found = list(rows.select_for_update())
    if not found:
        raise NotFound("no such mapping", field="host")
    return found


def mapping_delete(home: Home, host: str, scheme: str | None = None) -> None:
    """Delete the host's mappings of this home (only the one of `scheme` when given); with
    scheme tcp, `host` is the public port of the mapping (its port is free again)."""
    with transaction.atomic():
        found = _mappings_of(home, host, scheme)
        ProxyMapping.objects.filter(pk__in=[m.pk for m in found]).delete()
        _after_commit_edge(*found)


def mapping_allow(
    home: Home, host: str, scheme: str | None, allow: list[str] | None
) -> list[ProxyMapping]:
    """Replace the allowlist of the mappings `host` and `scheme` name (see mapping_delete);
    empty: every client. The edge follows at run time, no reload."""
    networks = _networks(allow)
    with transaction.atomic():
        found = _mappings_of(home, host, scheme)
        had_allow = any(m.allow for m in found)
        ProxyMapping.objects.filter(pk__in=[m.pk for m in found]).update(allow=networks)
        for m in found:
            m.allow = networks
        _after_commit_edge(*found, had_allow=had_allow)
    return found


# --- seeding, for load tests ------------------------------------------------------------------

SEED_OWNER = "seed-home-{}"  # owns the n-th seeded home
SEED_ACCOUNT = "seed-account-{}"  # an account without a home, to claim one through the API
SEED_TOKEN_NAME = "seed_scale"  # noqa: S105 - the name of the tokens, not a token
_SEEDED_NAME = re.compile(r"seed-(home|account)-\d+")


@dataclass(frozen=True)
class Seeded:
    homes: list[Home]  # in seed order: homes[n] is owned by SEED_OWNER.format(n)
    mappings: int
    accounts: list[str]
    first_mapping: ProxyMapping | None
    tokens: dict[str, str]  # username -> a fresh token; only when asked for


def homes_seed(
    homes: int,
    mappings: int,
    accounts: int = 0,
    *,
    public_keys: Sequence[str],
    domain: str = "scale.test",
    first_host: str | None = None,
    tokens: bool = False,
) -> Seeded:
    """Make the database hold exactly `homes` ready homes with `mappings` https mappings spread
    over them (`h<n>-<j>.<domain>`, the first one named `first_host` when given) and `accounts`
    accounts without a home, in bulk; home n gets `public_keys[n % len(public_keys)]` (one key
    for all, or one each to connect them). Running it again with other counts grows or shrinks what
    an earlier run seeded; nothing else is touched. Routes follow at the next edge sync.

    Seeded accounts (`seed-home-<n>`, `seed-account-<n>`) have no usable password; with
    `tokens`, the first home's owner and every account get a fresh API token (earlier seeded
    tokens of theirs are revoked)."""
    for field, count in (("homes", homes), ("mappings", mappings), ("accounts", accounts)):
        if count < 0:
            raise Invalid("must be 0 or more", field=field)
    if mappings and not homes:
        raise Invalid("mappings need at least one home", field="mappings")
    domain = _hostname(domain, "domain")
    first_host = _hostname(first_host, "first_host") if first_host else None
    if not public_keys:
        raise Invalid("at least one key is required", field="public_key")
    try:
        keys = [sshd.validate_public_key(key) for key in public_keys]
    except ValueError as exc:
        raise invalid_from(exc, "public_key") from None
    owners = [SEED_OWNER.format(n) for n in range(homes)]
    extra = [SEED_ACCOUNT.format(n) for n in range(accounts)]
    with transaction.atomic():
        seeded = _seed_accounts(owners + extra)
        wanted = {*owners, *extra}
        gone = [user for name, user in seeded.items() if name not in wanted]
        _release_seeded(list(Home.objects.filter(owner__in=gone)))
        User.objects.filter(pk__in=[user.pk for user in gone]).delete()
        placed = _seed_homes([seeded[name] for name in owners], keys)
        first = _seed_mappings(placed, mappings, domain, first_host)
        issued = _seed_tokens([seeded[name] for name in owners[:1] + extra]) if tokens else {}
    return Seeded(placed, mappings, extra, first, issued)


def _hostname(value: str, field: str) -> str:
    try:
        return validate_hostname(value, field)
    except ValueError as exc:
        raise invalid_from(exc, field) from None


def _seed_accounts(names: list[str]) -> dict[str, User]:
    """Every account seeded so far, plus the `names` missing; a real account with one of
    those names (it has a password) stops the run."""

    def seeded() -> dict[str, User]:
        candidates = User.objects.filter(username__startswith="seed-")
        return {u.username: u for u in candidates if _SEEDED_NAME.fullmatch(u.username)}

    found = seeded()
    for name, user in found.items():
        if user.has_usable_password():
            raise Conflict(f"account {name} exists and was not seeded", field="homes")
    missing = [User(username=n, password=make_password(None)) for n in names if n not in found]
    User.objects.bulk_create(missing, batch_size=500)
    return seeded()


def _release_seeded(released: list[Home]) -> None:
    accounts = edge.ssh_accounts()
    for home in released:
        if home.identity:
            accounts.remove(home.identity)
    ProxyMapping.objects.filter(home__in=released).delete()
    traffic_forget(port for home in released for port in home.ports)
    for home in released:
        names.home_names_release(home)
    Home.objects.filter(pk__in=[h.pk for h in released]).update(owner=None, **_FREE_SLOT)


def _seed_homes(owners: list[User], keys: list[str]) -> list[Home]:
    """The owners' homes in order: the one each has already, else the lowest free slot;
    ready, with their SSH identity (owner n: key n, wrapping around) installed."""
    taken = {h.owner_id: h for h in Home.objects.select_for_update().filter(owner__in=owners)}
    need = sum(1 for user in owners if user.pk not in taken)
    free = list(
        Home.objects.select_for_update()
        .filter(status=HomeStatus.FREE, owner=None)
        .order_by("index")[:need]
    )
    if len(free) < need:
        raise Conflict(
            f"{len(free)} free home slots for {need} new homes (CLOUDATHOME_HOME_SLOTS)",
            field="homes",
        )
    placed = []
    for n, user in enumerate(owners):
        home = taken.get(user.pk) or free.pop(0)
        if home.owner_id != user.pk:
            _assign(home, user, keys[n % len(keys)])
        home.status, home.status_detail = HomeStatus.READY, ""
        placed.append(home)
    Home.objects.bulk_update(
        placed,
        ["owner", "slug", "public_key", "identity", "ssh_username", "status", "status_detail"],
        batch_size=500,
    )
    accounts = edge.ssh_accounts()
    installed = accounts.installed()
    for home in placed:
        if home.identity not in installed:
            accounts.install(home.identity, home.public_key, list(home.ports))
    return placed


def _seed_mappings(
    homes: list[Home], count: int, domain: str, first_host: str | None
) -> ProxyMapping | None:
    """Mapping k goes to home k % len(homes) as its (k // len(homes))-th, on the port of that
    rank in the home's range (wrapping around): every home gets its share."""
    wanted: dict[str, tuple[Home, int]] = {}
    for k in range(count):
        n, j = k % len(homes), k // len(homes)
        host = first_host if k == 0 and first_host else f"h{n}-{j}.{domain}"
        wanted[host] = (homes[n], homes[n].port_base + j % homes[n].port_count)
    if len(wanted) < count:
        raise Invalid(f"{first_host} is one of the seeded names; pick another", "first_host")
    others = ProxyMapping.objects.exclude(home__in=homes)
    clash = others.filter(host__endswith=f".{domain}").first() or (
        others.filter(host=first_host).first() if first_host else None
    )
    if clash is not None:
        raise Conflict(f"{clash.host} is mapped by a home that was not seeded", field="domain")
    kept, stale = set(), []
    for pk, host, scheme, home_id, port in ProxyMapping.objects.filter(home__in=homes).values_list(
        "pk", "host", "scheme", "home_id", "tunnel_port"
    ):
        home, wanted_port = wanted.get(host, (None, None))
        if (
            scheme == Scheme.HTTPS
            and home is not None
            and (home.pk, wanted_port) == (home_id, port)
        ):
            kept.add(host)
        else:
            stale.append(pk)
    for start in range(0, len(stale), 500):
        ProxyMapping.objects.filter(pk__in=stale[start : start + 500]).delete()
    ProxyMapping.objects.bulk_create(
        [
            ProxyMapping(home=home, host=host, scheme=Scheme.HTTPS, tunnel_port=port)
            for host, (home, port) in wanted.items()
            if host not in kept
        ],
        batch_size=1000,
    )
    first = next(iter(wanted), None)
    return ProxyMapping.objects.filter(host=first, scheme=Scheme.HTTPS).first() if first else None


def _seed_tokens(users: list[User]) -> dict[str, str]:
    ApiToken.objects.filter(user__in=users, name=SEED_TOKEN_NAME).delete()
    return {user.username: ApiToken.issue(user, SEED_TOKEN_NAME)[1] for user in users}
