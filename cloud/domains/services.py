"""Names a home owns and the proof of its custom domains: add, verify (a DNS check in a
task, then on a schedule with backoff), delete and revoke; its label under the base domain;
and the ownership check every mapping passes. Ownership is the claim tree of models.py."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from cloud.domains import dns, rules
from cloud.domains.models import Claim, ClaimKind, Domain, DomainStatus
from cloud.homes.models import Home, HomeStatus, ProxyMapping
from workers.common.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, invalid_from
from workers.common.names import validate_hostname

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_CHECK = dt.timedelta(minutes=1)  # time to create the record after adding the domain
RETRY_MAX = dt.timedelta(days=1)
CHECK_EVERY = dt.timedelta(days=1)  # a verified domain is re-checked daily
FAILED_CHECKS_TO_DROP = 3  # ... and loses its claim and routes after this many failures
MAX_DOMAINS_PER_HOME = 50  # each one costs a DNS lookup per check
_TRIES = 5


def _retry_delay(failures: int) -> dt.timedelta:
    """1, 2, 4 ... minutes after each failed check of a domain not yet verified, at most a day."""
    return min(FIRST_CHECK * 2 ** max(failures - 1, 0), RETRY_MAX)


def _durably(work: Callable[[], T]) -> T:
    """Run `work` in a transaction of its own, again when a concurrent claim or prune won a
    race on the same names (unique name, or the parent's foreign key, checked at commit):
    the next try sees the winner's rows and answers from them."""
    for attempt in range(_TRIES):
        try:
            with transaction.atomic(durable=True):
                return work()
        except (IntegrityError, Claim.DoesNotExist):
            if attempt == _TRIES - 1:
                raise Conflict("this name is changing hands right now; try again") from None
    raise AssertionError("unreachable")


# --- the claim tree --------------------------------------------------------------------------


def _blocked(home: Home, owned: Claim, name: str) -> DomainError:
    if owned.home_id == home.pk:
        return Conflict(f"this home already owns {owned.name}, which is nested with {name}")
    return Forbidden(f"{owned.name} is owned by another home")


def _branch(name: str, parent: Claim | None, home: Home) -> Claim:
    row = Claim.objects.filter(name=name).first()
    if row is None:
        try:
            with transaction.atomic():
                return Claim.objects.create(name=name, kind=ClaimKind.BRANCH, parent=parent)
        except IntegrityError:
            row = Claim.objects.get(name=name)  # committed meanwhile by a concurrent claim
    if row.kind != ClaimKind.BRANCH:
        raise _blocked(home, row, name)
    return row


def _take(home: Home, name: str, kind: ClaimKind, domain: Domain | None = None) -> Claim:
    """Claim `name` for `home` inside the caller's transaction: the branch chain above it,
    then its leaf. Refused when the name, a name above it or one below it is owned."""
    parent = None
    for above in reversed(rules.ancestors(name)):
        parent = _branch(above, parent, home)
    row = Claim.objects.filter(name=name).first()
    if row is not None and row.kind != ClaimKind.BRANCH:
        if (
            row.home_id == home.pk
            and row.kind == kind
            and row.domain_id == getattr(domain, "pk", None)
        ):
            return row
        raise _blocked(home, row, name)
    if row is not None:
        below = Claim.objects.filter(name__endswith=f".{name}")
        owned = below.exclude(kind=ClaimKind.BRANCH).order_by("name").first()
        if owned is not None:
            raise _blocked(home, owned, name)
        # Branches left over by names released since (pruned late): the name is free.
        for stale in sorted(below, key=lambda c: -len(c.name)):
            stale.delete()
        row.delete()
    with transaction.atomic():
        return Claim.objects.create(name=name, kind=kind, parent=parent, home=home, domain=domain)


def _release(claim: Claim) -> None:
    """Inside the caller's transaction: drop the claim and the home's mappings under it. The
    claim row is locked first, so a mapping being created under it commits before and is
    removed here, or waits and finds no claim."""
    if Claim.objects.select_for_update().filter(pk=claim.pk).first() is None:
        return
    mappings = ProxyMapping.objects.filter(home=claim.home).filter(
        Q(host=claim.name) | Q(host__endswith=f".{claim.name}")
    )
    hosts = sorted(set(mappings.values_list("host", flat=True)))
    mappings.delete()
    parent = claim.parent_id
    Claim.objects.filter(pk=claim.pk).delete()
    transaction.on_commit(lambda: _after_release(hosts, [parent]))


def _after_release(hosts: list[str], parents: Iterable[int | None]) -> None:
    from cloud.edge import tasks as edge_tasks

    for host in hosts:
        edge_tasks.edge_update.delay(host)
    for parent in parents:
        _prune(parent)


def _prune(claim_id: int | None) -> int:
    """Delete childless branches from `claim_id` upwards; a concurrent claim that took one
    meanwhile keeps it (the foreign key refuses the delete)."""
    pruned = 0
    while claim_id is not None:
        try:
            with transaction.atomic():
                row = (
                    Claim.objects.select_for_update()
                    .filter(pk=claim_id, kind=ClaimKind.BRANCH)
                    .first()
                )
                if row is None or Claim.objects.filter(parent_id=claim_id).exists():
                    return pruned
                claim_id = row.parent_id
                row.delete()
        except IntegrityError:
            return pruned
        pruned += 1
    return pruned


def claim_covering(home: Home, host: str) -> Claim:
    """The claim of `home` that covers `host`, locked until the caller's transaction ends (a
    revocation then waits for the mapping and removes it); else 403 naming the step to take."""
    claim = (
        Claim.objects.select_for_update()
        .filter(home=home, name__in=[host, *rules.ancestors(host)])
        .exclude(kind=ClaimKind.BRANCH)
        .first()
    )
    if claim is None:
        raise Forbidden(_ownership_step(home, host), field="host")
    return claim


def _not_ownable(home: Home, name: str) -> str | None:
    """Why no home may own `name` as a custom domain, pointing at this home's own names."""
    reason = rules.why_not_ownable(name)
    label = rules.base_name(home.label)
    if reason and label:
        return f"{reason} (this home's names are under {label})"
    return reason


def _ownership_step(home: Home, host: str) -> str:
    label = rules.base_name(home.label)
    reason = _not_ownable(home, host)
    if reason:
        return reason
    pending = home.domains.filter(name__in=[host, *rules.ancestors(host)]).order_by("-name").first()
    if pending is not None:
        return (
            f"{pending.name} is not verified yet ({pending.reason or 'not checked yet'}): create "
            f"the TXT record {pending.record_name} with the value {pending.token}, then POST "
            f"/api/homes/{home.slug}/domains/{pending.name}/verify"
        )
    under = f", or publish a name under {label}" if label else ""
    return (
        f"this home does not own {host}: add it (or a domain above it) with POST "
        f"/api/homes/{home.slug}/domains and prove it with a DNS TXT record{under}"
    )


# --- the base domain's labels ------------------------------------------------------------------


def base_domain(home: Home) -> str | None:
    return rules.base_name(home.label)


def _label_taken(home: Home, label: str) -> bool:
    return Home.objects.filter(label=label).exclude(pk=home.pk).exists()


def label_choose(home: Home, user: User, wanted: str | None) -> str | None:
    """The label a home gets when it is claimed: the one asked for, else one derived from
    the user name (alice, alice-3 when taken); None without a base domain."""
    if not settings.BASE_DOMAIN:
        if wanted:
            raise Invalid("this cloud has no base domain, so homes have no label", field="label")
        return None
    if wanted:
        try:
            label = rules.validate_label(wanted)
        except ValueError as exc:
            raise invalid_from(exc, "label") from None
        if _label_taken(home, label):
            raise Conflict("this label is taken by another home", field="label")
        return label
    stem = rules.label_stem(user.get_username())
    for candidate in (stem, f"{stem}-{home.index}", f"{stem}-{secrets.token_hex(3)}"):
        try:
            label = rules.validate_label(candidate)
        except ValueError:
            continue
        if not _label_taken(home, label):
            return label
    return f"home-{home.index}-{secrets.token_hex(3)}"


def label_claim(home: Home) -> Claim | None:
    """Own the home's name under the base domain (idempotent); None when it has none or the
    name is held otherwise (the base domain changed under a verified custom domain)."""

    def take() -> Claim | None:
        locked = Home.objects.select_for_update().filter(pk=home.pk).first()
        name = rules.base_name(locked.label) if locked else None
        if locked is None or name is None or locked.status not in _LIVE:
            return None
        return _take(locked, name, ClaimKind.LABEL)

    try:
        return _durably(take)
    except DomainError as exc:
        log.warning("%s cannot own its label's name: %s", home, exc)
        return None


_LIVE = (HomeStatus.PROVISIONING, HomeStatus.READY)


def home_names_release(home: Home) -> None:
    """Every name of a home being released: its claims, its custom domains (the caller
    removes its mappings)."""
    parents = set(Claim.objects.filter(home=home).values_list("parent_id", flat=True))
    Claim.objects.filter(home=home).delete()
    Domain.objects.filter(home=home).delete()
    transaction.on_commit(lambda: _after_release([], parents))


def names_reconcile() -> dict[str, int]:
    """Converge claims on the settings and homes (beat, worker start): every live home has
    a label and owns its name when a base domain is set, label claims of a changed base
    domain or of a gone home are released, and childless branches are pruned."""
    counts = {"labelled": 0, "claimed": 0, "released": 0, "pruned": 0}
    if settings.BASE_DOMAIN:
        for home in Home.objects.filter(owner__isnull=False, label__isnull=True, status__in=_LIVE):
            with transaction.atomic():
                locked = Home.objects.select_for_update().filter(pk=home.pk, label=None).first()
                if locked is None or locked.owner is None:
                    continue
                locked.label = label_choose(locked, locked.owner, None)
                try:
                    with transaction.atomic():
                        locked.save(update_fields=["label"])
                except IntegrityError:
                    continue  # taken meanwhile: the next run picks another
            counts["labelled"] += 1
    for claim in Claim.objects.filter(kind=ClaimKind.LABEL).select_related("home"):
        owner = claim.home
        if owner is None or owner.status not in _LIVE or claim.name != rules.base_name(owner.label):
            with transaction.atomic():
                _release(claim)
            counts["released"] += 1
    owning = Claim.objects.filter(kind=ClaimKind.LABEL).values_list("home_id", flat=True)
    for home in Home.objects.filter(label__isnull=False, status__in=_LIVE).exclude(pk__in=owning):
        if settings.BASE_DOMAIN and label_claim(home) is not None:
            counts["claimed"] += 1
    for pk in Claim.objects.filter(kind=ClaimKind.BRANCH, children__isnull=True).values_list(
        "pk", flat=True
    ):
        counts["pruned"] += _prune(pk)
    return counts


# --- custom domains ----------------------------------------------------------------------------


def _valid_name(name: str) -> str:
    try:
        return validate_hostname(name, field="name")
    except ValueError as exc:
        raise invalid_from(exc, "name") from None


def domain_of(home: Home, name: str) -> Domain:
    domain = home.domains.filter(name=_valid_name(name)).first()
    if domain is None:
        raise NotFound("no such domain", field="name")
    return domain


def domain_add(home: Home, name: str) -> Domain:
    """Ask to own a custom domain; it is checked a minute later (time to create the record)
    and then on the retry schedule, or at once on domain_verify."""
    name = _valid_name(name)
    reason = _not_ownable(home, name)
    if reason:
        raise Forbidden(reason, field="name")
    with transaction.atomic():
        Home.objects.select_for_update().filter(pk=home.pk).first()  # one add at a time
        mine = list(home.domains.values_list("name", flat=True))
        if name in mine:
            raise Conflict("this domain is already added", field="name")
        nested = [other for other in mine if rules.nested(name, other)]
        if nested:
            raise Conflict(f"nested with this home's domain {nested[0]}: keep one", field="name")
        if len(mine) >= MAX_DOMAINS_PER_HOME:
            raise Conflict(f"at most {MAX_DOMAINS_PER_HOME} custom domains per home", field="name")
        return Domain.objects.create(
            home=home,
            name=name,
            token=secrets.token_urlsafe(32),
            next_check=timezone.now() + FIRST_CHECK,
        )


def domain_verify(domain: Domain) -> None:
    """Check the domain's record now (in a task); the answer lands in its status."""
    from cloud.domains import tasks

    Domain.objects.filter(pk=domain.pk).update(next_check=timezone.now() + FIRST_CHECK)
    transaction.on_commit(lambda: tasks.domain_check.delay(domain.pk))


def domain_delete(domain: Domain) -> None:
    """Forget the domain: its claim, the home's mappings under it and their routes."""
    with transaction.atomic():
        claim = Claim.objects.filter(domain=domain).first()
        if claim is not None:
            _release(claim)
        Domain.objects.filter(pk=domain.pk).delete()


def domain_revoke(domain: Domain) -> None:
    """An administrator takes the name away: claim, mappings and routes go at once; it is
    not checked again until its home asks (POST .../verify)."""
    with transaction.atomic():
        locked = Domain.objects.select_for_update().filter(pk=domain.pk).first()
        if locked is None:
            return
        claim = Claim.objects.filter(domain=locked).first()
        if claim is not None:
            _release(claim)
        locked.status = DomainStatus.FAILED
        locked.reason = "revoked by an administrator"
        locked.next_check = None
        locked.save(update_fields=["status", "reason", "next_check"])


def domain_check(domain_id: int) -> None:
    """Look the domain's TXT record up and apply the answer: own the name when it holds the
    token, else count a failed check (a verified domain loses its claim and routes after
    FAILED_CHECKS_TO_DROP of them)."""
    domain = Domain.objects.select_related("home").filter(pk=domain_id).first()
    if domain is None:
        return
    reason = rules.why_not_ownable(domain.name)
    if reason:
        _check_failed(domain_id, reason, at_once=True)
        return
    try:
        values = dns.txt_values(domain.record_name)
    except dns.NoRecord:
        reason = f"no TXT record at {domain.record_name}"
    except dns.LookupFailed as exc:
        reason = f"the DNS lookup of {domain.record_name} failed: {exc}"
    else:
        reason = None if domain.token in values else _other_value(domain, values)
    if reason:
        _check_failed(domain_id, reason)
        return
    try:
        _durably(lambda: _check_passed(domain_id))
    except DomainError as exc:
        _check_failed(domain_id, exc.message)


def _other_value(domain: Domain, values: list[str]) -> str:
    if any(v.strip().strip("\"'").strip() == domain.token for v in values):
        return (
            "the record holds the value with quotes or spaces around it: store it exactly as shown"
        )
    return "the record holds another value"


def _check_passed(domain_id: int) -> None:
    domain = Domain.objects.select_for_update().select_related("home").filter(pk=domain_id).first()
    if domain is None:
        return
    now = timezone.now()
    if not Claim.objects.filter(domain=domain).exists():
        _take(domain.home, domain.name, ClaimKind.DOMAIN, domain)
        domain.verified = now
    domain.status = DomainStatus.VERIFIED
    domain.reason = ""
    domain.failures = 0
    domain.checked = now
    domain.next_check = now + CHECK_EVERY
    domain.save()


def _check_failed(domain_id: int, reason: str, at_once: bool = False) -> None:
    with transaction.atomic():
        domain = Domain.objects.select_for_update().filter(pk=domain_id).first()
        if domain is None:
            return
        now = timezone.now()
        domain.failures += 1
        domain.checked = now
        claim = Claim.objects.filter(domain=domain).first()
        if claim is not None and not at_once and domain.failures < FAILED_CHECKS_TO_DROP:
            domain.reason = (
                f"{reason} (failed check {domain.failures} of {FAILED_CHECKS_TO_DROP} before "
                "its routes are removed)"
            )
            domain.next_check = now + CHECK_EVERY
        else:
            if claim is not None:
                _release(claim)
                if not at_once:
                    reason = f"{reason}: {FAILED_CHECKS_TO_DROP} daily checks failed, so its routes were removed"
            domain.status = DomainStatus.FAILED
            domain.reason = reason
            domain.next_check = now + _retry_delay(domain.failures)
        domain.save()


def domains_due(limit: int = 500) -> int:
    """Queue the checks that are due (beat); each is pushed to its next slot first, so a
    lost task or an overlapping beat never checks one domain twice in a row."""
    from cloud.domains import tasks

    now = timezone.now()
    due = list(
        Domain.objects.filter(next_check__lte=now)
        .order_by("next_check")
        .values_list("pk", flat=True)[:limit]
    )
    queued = 0
    for pk in due:
        claimed = Domain.objects.filter(pk=pk, next_check__lte=now).update(
            next_check=now + FIRST_CHECK
        )
        if claimed:
            tasks.domain_check.delay(pk)
            queued += 1
    return queued
