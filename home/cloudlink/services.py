"""The home's view of its link to the cloud: the loaded cloudlink.yaml, an API client, and
the health checks of the dashboard (API reachable, token valid, SSH preflight)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import paramiko
from django.conf import settings

from home.cloudlink import config
from home.cloudlink.client import CloudClient, CloudError


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


def link_status(free_port: int | None) -> list[Check]:
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
        checks.append(Check("token", True, f"home {home['slug']} is {home['status']}"))
    if free_port is None:
        checks.append(Check("ssh", False, "every port of the range is in use; nothing to probe"))
    else:
        checks.append(ssh_preflight(free_port))
    return checks
