"""The home's view of its link to the cloud: the loaded cloudlink.yaml, an API client, the
link check (API reachable, token valid, SSH preflight) that a periodic task runs and stores
for the dashboard and `/api/status`, and what the cloud says this home owns."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from home.cloudlink import config
from home.cloudlink.client import CloudClient, CloudError
from home.cloudlink.models import LinkCheck, LinkState
from home.tunnels.models import Tunnel
from workers.common.names import covers


@functools.cache
def link() -> config.CloudLink:
    return config.load(Path(settings.CLOUDLINK_CONFIG))


def cloud() -> CloudClient:
    current = link()
    return CloudClient(current.cloudserver_url, current.auth_token)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def ssh_preflight(port: int, timeout: float = 10.0) -> Check:
    """Authenticate with the home's key against the pinned host key and ask to listen on
    one of our ports, then cancel: proves a tunnel would be accepted before spawning one."""
    current = link()
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(current.ssh.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            current.ssh.host,
            port=current.ssh.port,
            username=current.ssh.username,
            key_filename=current.ssh.private_key_path,
            look_for_keys=False,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
        )
        transport = client.get_transport()
        assert transport is not None
        transport.request_port_forward("127.0.0.1", port)
        transport.cancel_port_forward("127.0.0.1", port)
    except paramiko.BadHostKeyException:
        return Check("ssh", False, "the cloud's host key does not match the pinned one")
    except paramiko.SSHException as exc:
        reason = str(exc) or type(exc).__name__
        if "TCP forwarding request denied" in reason:
            reason = f"the cloud refused to listen on port {port}"
        return Check("ssh", False, reason)
    except (TimeoutError, OSError) as exc:
        return Check(
            "ssh", False, f"cannot connect to {current.ssh.host}:{current.ssh.port}: {exc}"
        )
    finally:
        client.close()
    return Check("ssh", True, f"key accepted, may listen on port {port}")


def _checks() -> list[Check]:
    checks: list[Check] = []
    current = link()
    try:
        home = cloud().home(current.home_slug)
    except CloudError as exc:
        ok_api = exc.status is not None
        checks.append(Check("api", ok_api, "reachable" if ok_api else str(exc)))
        checks.append(Check("token", False, str(exc)))
    else:
        checks.append(Check("api", True, "reachable"))
        owns = (
            f"; it owns {home['base_domain']} and the names below"
            if home.get("base_domain")
            else ""
        )
        checks.append(Check("token", True, f"home {home['slug']} is {home['status']}{owns}"))
    # The last free port, not the first: tunnel_reserve hands out the first, and a tunnel
    # spawned there while the probe holds it would fail its forward.
    port = Tunnel.objects.free_port(reversed(current.ports.range))
    if port is None:
        checks.append(Check("ssh", False, "every port of the range is in use; nothing to probe"))
    else:
        checks.append(ssh_preflight(port))
    return checks


def link_check() -> LinkCheck:
    """Run every check and store the result (beat, every LINK_CHECK_SECONDS, and each worker
    start); a missing or bad cloudlink.yaml is a failed check, not a crash."""
    try:
        checks = _checks()
    except config.ConfigError as exc:
        checks = [Check("config", False, f"the cloud link is not configured: {exc}")]
    failed = next((c for c in checks if not c.ok), None)
    row, _ = LinkCheck.objects.update_or_create(
        pk=1,
        defaults={
            "state": LinkState.FAILED if failed else LinkState.OK,
            "reason": failed.detail if failed else "",
            "checks": [dataclasses.asdict(c) for c in checks],
            "checked_at": timezone.now(),
            "queued_at": None,
        },
    )
    return row


# A "check now" still waiting for a worker this long is presumed lost (broker restarted).
STALE_QUEUED = dt.timedelta(minutes=1)


def link_check_queue() -> LinkCheck:
    """Queue a check now ("Check now", `POST /api/status/check`); a click while one waits
    queues nothing more, so repeated clicks never hammer the cloud."""
    from home.cloudlink import tasks

    now = timezone.now()
    with transaction.atomic():
        row = LinkCheck.objects.select_for_update().filter(pk=1).first() or LinkCheck(pk=1)
        if row.queued_at is None or row.queued_at < now - STALE_QUEUED:
            row.queued_at = now
            row.save()
            transaction.on_commit(lambda: tasks.link_check.delay())
    return row


@dataclass(frozen=True)
class Ownership:
    """What the cloud says of a name this home wants to publish: `base` (under the home's
    base domain), `verified`, `unverified` or `failed` (a custom domain and its last check),
    or `refused` (no home may own it, or it is taken); with the TXT record to create."""

    status: str
    reason: str = ""
    record_name: str = ""
    record_value: str = ""

    @property
    def owned(self) -> bool:
        return self.status in ("base", "verified")


def names_ownership(names: Iterable[str], add: Collection[str] = ()) -> dict[str, Ownership]:
    """Ask the cloud (two calls, whatever the count) whether this home owns each name; a
    name of `add` that no custom domain of the home covers is asked for as one (the cloud
    then shows the record that proves it)."""
    slug = link().home_slug
    client = cloud()
    base = client.home(slug).get("base_domain")
    domains = client.domains(slug)
    found: dict[str, Ownership] = {}
    for name in names:
        if base and covers(base, name):
            found[name] = Ownership("base", f"under this home's base domain {base}")
            continue
        covering = [d for d in domains if covers(d["name"], name)]
        if not covering and name not in add:
            found[name] = Ownership(
                "failed", "no custom domain of this home on the cloud covers it"
            )
            continue
        if not covering:
            try:
                covering = [client.add_domain(slug, name)]
            except CloudError as exc:
                if exc.status in (400, 403, 409, 422):
                    found[name] = Ownership("refused", str(exc))
                    continue
                raise
            domains.extend(covering)
        best = next((d for d in covering if d["status"] == "verified"), covering[0])
        found[name] = Ownership(
            best["status"],
            best["reason"] or ("" if best["status"] == "verified" else "not checked yet"),
            best["verification"]["name"],
            best["verification"]["value"],
        )
    return found


def name_ownership(name: str) -> Ownership:
    return names_ownership([name], add={name})[name]


def name_verify(name: str) -> None:
    """Ask the cloud to check the record of the custom domain covering `name` now."""
    slug = link().home_slug
    client = cloud()
    for domain in client.domains(slug):
        if covers(domain["name"], name):
            client.verify_domain(slug, domain["name"])
