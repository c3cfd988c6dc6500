"""Proxy entry and tunnel workflows: an entry asks the cloud for its mapping and stores a
tunnel's desired state, converged by a reconciler that spawns, watches and stops the ssh
processes (through tunnels/ssh.py, the one door to them)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from home.certs.models import Domain
from home.cloudlink.client import CloudError
from home.cloudlink.services import cloud, link
from home.tunnels import ssh
from home.tunnels.models import EntryScheme, ProxyEntry, Tunnel, TunnelState
from workers.common.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    Unavailable,
    invalid_from,
)
from workers.common.names import validate_hostname
from workers.common.networks import validate_networks
from workers.locks import exclusive

log = logging.getLogger(__name__)

READY_TIMEOUT = 15.0


class NoFreePort(Exception):
    pass


def allocate_port() -> int:
    """A port of the home's range that no tunnel (permanent or temporary) holds."""
    port = Tunnel.objects.free_port(link().ports.range)
    if port is None:
        raise NoFreePort("every tunnel port of this home is in use")
    return port


def tunnel_reserve(
    name: str, local_port: int, temporary: bool = False, desired_open: bool = False
) -> Tunnel:
    """A tunnel row holding a free port of the range. Concurrent flows (two certificates, an
    entry) may pick the same free port; the unique port decides and the loser takes the next."""
    for _ in range(len(link().ports.range)):
        try:
            with transaction.atomic():
                return Tunnel.objects.create(
                    name=name,
                    remote_port=allocate_port(),
                    local_port=local_port,
                    temporary=temporary,
                    desired_open=desired_open,
                )
        except IntegrityError:
            continue
    raise NoFreePort("every tunnel port of this home is in use")


def _endpoint() -> dict[str, Any]:
    """How this home reaches the cloud's sshd, from its link (cloudlink.yaml)."""
    current = link().ssh
    return {
        "host": current.host,
        "port": current.port,
        "username": current.username,
        "private_key": Path(current.private_key_path),
        "known_hosts": Path(current.known_hosts),
    }


def spec_of(tunnel: Tunnel) -> ssh.TunnelSpec:
    return ssh.TunnelSpec(
        **_endpoint(),
        remote_port=tunnel.remote_port,
        local_port=tunnel.local_port,
        local_host=tunnel.local_host,
    )


def control_path() -> Path:
    """Where the home's master connection keeps its control socket: in the tunnels folder
    (0700) when that path fits a unix socket's, else in a private folder of ours under the
    temporary directory, named after the state folder (ssh.spawn_master refuses one that is
    not ours)."""
    path = Path(settings.TUNNEL_LOG_DIR) / "link"
    if len(str(path).encode()) <= ssh.CONTROL_PATH_MAX:
        return path
    digest = hashlib.sha256(str(settings.STATE_DIR).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"cah-{os.getuid()}-{digest}" / "link"


def master_spec(control: Path | None = None) -> ssh.MasterSpec:
    """This home's master connection to the cloud, from its link (cloudlink.yaml); its control
    socket at `control` (a foreground command's own), else the console's (control_path())."""
    return ssh.MasterSpec(**_endpoint(), control_path=control or control_path())


def log_path(tunnel: Tunnel) -> Path:
    directory = Path(settings.TUNNEL_LOG_DIR)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory / f"tunnel-{tunnel.remote_port}.log"


def handle_of(tunnel: Tunnel) -> ssh.ProcessHandle | None:
    if tunnel.pid is None or tunnel.start_time is None:
        return None
    return ssh.ProcessHandle(pid=tunnel.pid, start_time=tunnel.start_time)


def tunnel_set_desired(tunnel: Tunnel, open_: bool) -> None:
    from home.tunnels import tasks

    Tunnel.objects.filter(pk=tunnel.pk).update(
        desired_open=open_,
        failures=0,
        retry_at=None,
        state=TunnelState.OPENING if open_ else tunnel.state,
    )
    transaction.on_commit(lambda: tasks.tunnel_reconcile.delay(tunnel.pk))


def _stop(tunnel: Tunnel) -> None:
    handle = handle_of(tunnel)
    if handle is not None:
        ssh.stop(handle)


def tunnel_reconcile(tunnel_id: int) -> str:
    """Converge one tunnel on its desired state; returns the state it ended in. One run per
    tunnel at a time (a click and the supervisor must not both spawn it)."""
    with exclusive(settings.REDIS_URL, f"tunnel-{tunnel_id}", timeout=60, wait=30):
        return _reconcile(tunnel_id)


def _reconcile(tunnel_id: int) -> str:
    tunnel = Tunnel.objects.filter(pk=tunnel_id).first()
    if tunnel is None:
        return "gone"
    handle = handle_of(tunnel)
    running = handle is not None and ssh.is_running(handle)
    now = timezone.now()
    if not tunnel.desired_open:
        if running:
            _stop(tunnel)
        Tunnel.objects.filter(pk=tunnel.pk).update(
            state=TunnelState.CLOSED, pid=None, start_time=None, since=None
        )
        return TunnelState.CLOSED
    if running:
        if tunnel.state != TunnelState.OPEN:
            Tunnel.objects.filter(pk=tunnel.pk).update(state=TunnelState.OPEN, last_error="")
        return TunnelState.OPEN
    if tunnel.state == TunnelState.OPEN and handle is not None:
        # It was up and died: say so, and respawn right away the first time.
        reason = ssh.last_error(log_path(tunnel)) or "the ssh process exited"
        log.warning("tunnel %s died: %s", tunnel, reason)
        tunnel.last_error = reason
    if tunnel.retry_at and tunnel.retry_at > now:
        return str(tunnel.state)
    path = log_path(tunnel)
    spec = spec_of(tunnel)
    new = ssh.spawn(spec, path)
    Tunnel.objects.filter(pk=tunnel.pk).update(
        state=TunnelState.OPENING, pid=new.pid, start_time=new.start_time
    )
    problem = ssh.wait_ready(spec, new, path, READY_TIMEOUT)
    if problem is None:
        Tunnel.objects.filter(pk=tunnel.pk).update(
            state=TunnelState.OPEN, since=timezone.now(), last_error="", failures=0, retry_at=None
        )
        return TunnelState.OPEN
    ssh.stop(new)
    failures = tunnel.failures + 1
    delay = ssh.next_delay(failures)
    Tunnel.objects.filter(pk=tunnel.pk).update(
        state=TunnelState.FAILED,
        pid=None,
        start_time=None,
        since=None,
        last_error=problem,
        failures=failures,
        retry_at=now + dt.timedelta(seconds=delay),
    )
    return TunnelState.FAILED


def tunnels_supervise() -> dict[str, int]:
    """Beat, every few seconds: respawn dead tunnels (with backoff), stop unwanted ones.
    Serialized so two runs never spawn the same tunnel twice."""
    counts: dict[str, int] = {}
    with exclusive(settings.REDIS_URL, "tunnels-supervise", timeout=120, wait=1):
        ids = list(
            Tunnel.objects.exclude(
                desired_open=False, pid__isnull=True, state=TunnelState.CLOSED
            ).values_list("pk", flat=True)
        )
        for pk in ids:
            state = tunnel_reconcile(pk)
            counts[state] = counts.get(state, 0) + 1
    return counts


def tunnel_stop_now(tunnel: Tunnel) -> None:
    """Synchronously stop and forget a tunnel's process (entry deletion, flow cleanup).
    Under the reconciler's lock: a supervisor run that read the tunnel as wanted before this
    would otherwise respawn it right after the kill, an ssh that no row remembers."""
    with exclusive(settings.REDIS_URL, f"tunnel-{tunnel.pk}", timeout=60, wait=30):
        tunnel.refresh_from_db()  # the caller's copy may predate the spawn that recorded the PID
        _stop(tunnel)
        for orphan in ssh.running_as(spec_of(tunnel)):  # spawned, but killed before recorded
            ssh.stop(orphan)
        Tunnel.objects.filter(pk=tunnel.pk).update(
            desired_open=False, state=TunnelState.CLOSED, pid=None, start_time=None, since=None
        )


def _networks(allow: list[str] | None) -> list[str]:
    try:
        return validate_networks(allow or [], "allow")
    except ValueError as exc:
        raise invalid_from(exc, "allow") from None


# The cloud's names of a mapping's fields, and the form's names of the same things.
_CLOUD_FIELDS = {"host": "hostname", "allow": "allow", "public_port": "scheme", "scheme": "scheme"}


def _refused(exc: CloudError, default: str) -> DomainError:
    field = _CLOUD_FIELDS.get(exc.field or "", default)
    if exc.status == 403:  # a name this home does not own: the cloud names the step
        return Forbidden(str(exc), field=field)
    if exc.status in (400, 409, 422):
        return Invalid(str(exc), field=field)
    return Unavailable(f"the cloud refused the mapping: {exc}")


def entry_create(
    domain: Domain,
    hostname: str,
    home_port: int,
    proxy_protocol: bool = False,
    scheme: str = EntryScheme.HTTPS,
    allow: list[str] | None = None,
) -> ProxyEntry:
    """Reserve a tunnel port, create the cloud's mapping (https of `hostname`, or tcp: a public
    port the cloud gives, no hostname), then store the entry; whatever fails undoes the steps
    before it, so nothing is half-applied."""
    if scheme not in EntryScheme.values:
        raise Invalid("must be 'https' or 'tcp'", field="scheme")
    if scheme == EntryScheme.TCP:
        hostname = ""
    else:
        try:
            hostname = validate_hostname(hostname, field="hostname")
        except ValueError as exc:
            raise invalid_from(exc, "hostname") from None
    if isinstance(home_port, bool) or not 1 <= int(home_port) <= 65535:
        raise Invalid("must be 1..65535", field="home_port")
    networks = _networks(allow)
    if hostname and ProxyEntry.objects.filter(hostname=hostname).exists():
        raise Conflict("an entry for this hostname exists", field="hostname")
    name = f"entry {hostname}" if hostname else f"entry tcp {secrets.token_hex(6)}"
    try:
        tunnel = tunnel_reserve(name, int(home_port))
    except NoFreePort as exc:
        raise Conflict(str(exc), field="hostname" if hostname else "scheme") from None
    slug = link().home_slug
    try:
        mapping = cloud().create_mapping(
            slug, hostname, scheme, tunnel.remote_port, proxy_protocol, networks
        )
    except CloudError as exc:
        tunnel.delete()
        raise _refused(exc, "hostname" if hostname else "scheme") from None
    public_port = mapping.get("public_port") if scheme == EntryScheme.TCP else None
    try:
        with transaction.atomic():
            if public_port is not None:
                Tunnel.objects.filter(pk=tunnel.pk).update(name=f"entry tcp :{public_port}")
            return ProxyEntry.objects.create(
                domain=domain,
                hostname=hostname,
                scheme=scheme,
                public_port=public_port,
                home_port=int(home_port),
                proxy_protocol=proxy_protocol,
                allow=networks,
                tunnel=tunnel,
            )
    except Exception:
        cloud().delete_mapping(slug, hostname or str(public_port), scheme=scheme)
        tunnel.delete()
        raise


def entry_allow(entry: ProxyEntry, allow: list[str] | None) -> ProxyEntry:
    """Replace the entry's allowlist: the cloud's edge first (it validates too), then the row."""
    networks = _networks(allow)
    try:
        cloud().set_mapping_allow(link().home_slug, entry.cloud_key, entry.scheme, networks)
    except CloudError as exc:
        raise _refused(exc, "allow") from None
    ProxyEntry.objects.filter(pk=entry.pk).update(allow=networks)
    entry.allow = networks
    return entry


def entry_delete(entry: ProxyEntry) -> None:
    """Stop the tunnel now, remove the cloud mapping, then the rows."""
    tunnel_stop_now(entry.tunnel)
    try:
        cloud().delete_mapping(link().home_slug, entry.cloud_key, scheme=entry.scheme)
    except CloudError as exc:
        raise Unavailable(f"the cloud could not remove the mapping: {exc}") from None
    tunnel = entry.tunnel
    with transaction.atomic():
        entry.delete()
        tunnel.delete()


def entry_tunnel(entry: ProxyEntry, open_: bool) -> None:
    tunnel_set_desired(entry.tunnel, open_)
