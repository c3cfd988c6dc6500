"""Tenants of a running cloud site for tests: an approved user, its API token, an SSH key
and a home provisioned through the API (ready to open tunnels and map names)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.sites import CloudSite
from tests.support.ssh import keygen
from workers.local.procs import wait_for


@dataclass
class Tenant:
    username: str
    password: str
    token: str
    api: requests.Session
    key: Path
    public_key: str
    home: dict

    def url(self, site: CloudSite, path: str = "") -> str:
        """This tenant's home in the API: `url(site, "/domains")`."""
        return f"{site.url}/api/homes/{self.home['slug']}{path}"


def tenant(site: CloudSite, tmp: Path, name: str, staff: bool = False, **claim: str) -> Tenant:
    """Create and approve `name`, claim a home (`claim` adds fields such as label) and wait
    until it is ready."""
    password = f"pw-{name}-Secret9"
    site.create_user(name, password, active=True, staff=staff)
    token = site.token(name, password)
    api = site.api(token)
    key = tmp / f"{name}_key"
    public_key = keygen(key)
    r = api.post(f"{site.url}/api/homes", json={"public_key": public_key, **claim}, timeout=10)
    assert r.status_code == 201, r.text
    home = ready_home(site, api, r.json()["slug"], timeout=30)
    return Tenant(name, password, token, api, key, public_key, home)


def ready_home(site: CloudSite, api: requests.Session, slug: str, timeout: float) -> dict:
    """The home once its provisioning is done."""
    return wait_for(
        lambda: (
            (h := api.get(f"{site.url}/api/homes/{slug}", timeout=5).json())["status"] == "ready"
            and h
        ),
        timeout=timeout,
        what=f"home {slug} provisioned",
    )


def live_routes(site: CloudSite, admin: requests.Session | None = None) -> list[dict]:
    """What HAProxy routes right now, as the admin API reports it (`admin`: a session with
    the administrator's token, so a tight poll does not log in each time)."""
    admin = admin or site.api(site.token("admin", site.admin_password))
    r = admin.get(f"{site.url}/api/admin/proxy-mappings/haproxy", timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json())
