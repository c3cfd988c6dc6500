"""Names a home may publish, on a whole cloud cloud (PostgreSQL, Celery, HAProxy) whose DNS
is pebble-challtestsrv: the base domain's labels, custom domains proven by a TXT record,
reserved names, takeovers refused, and two tenants racing for one name."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.sites import CloudSite
from tests.support.tenants import Tenant, live_routes, tenant
from workers.local.pebble import MockDns
from workers.local.procs import wait_for
from workers.local.sites import prove_domain

PUBLIC_HOST = "cloud.example.test"
RESERVED = "status.example.test"


# The module's cloud (tests/conftest.py) resolves TXT records with the module's `dns`.
CLOUD_ENV = {
    "CLOUDATHOME_BASE_DOMAIN": "homes.test",
    "CLOUDATHOME_PUBLIC_HOST": PUBLIC_HOST,
    "CLOUDATHOME_RESERVED_NAMES": RESERVED,
}


def _map_files(cloud: CloudSite) -> str:
    return "".join(p.read_text() for p in (cloud.state / "haproxy" / "maps").iterdir())


def _map(cloud: CloudSite, who: Tenant, host: str, scheme: str = "https") -> requests.Response:
    body = {"host": host, "scheme": scheme, "tunnel_port": who.home["port_base"]}
    return who.api.post(who.url(cloud, "/proxy-mappings"), json=body, timeout=10)


def _domain(cloud: CloudSite, who: Tenant, name: str) -> dict:
    r = who.api.get(who.url(cloud, f"/domains/{name}"), timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _verify(cloud: CloudSite, who: Tenant, name: str, until: str) -> dict:
    """Ask for a check and wait for the worker's answer (a new `checked` time)."""
    before = _domain(cloud, who, name)["checked"]
    r = who.api.post(who.url(cloud, f"/domains/{name}/verify"), timeout=10)
    assert r.status_code == 202, r.text
    domain = wait_for(
        lambda: (d := _domain(cloud, who, name))["checked"] != before and d,
        timeout=20,
        what=f"the check of {name}",
    )
    assert domain["status"] == until, domain
    return dict(domain)


def _shell(cloud: CloudSite, code: str) -> str:
    """Run `code` in the cloud's Django shell; the last line it printed."""
    done = cloud.manage("shell", "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _proven(cloud: CloudSite, dns: MockDns, who: Tenant, name: str) -> dict:
    return prove_domain(cloud, who.api, who.home["slug"], dns, name)


# --- the base domain -------------------------------------------------------------------------


def test_a_home_owns_its_label_under_the_base_domain_and_every_name_below_it_without_proof(
    cloud: CloudSite, alice: Tenant
) -> None:
    assert alice.home["base_domain"] == "alice.homes.test"
    for host in ("alice.homes.test", "Www.Alice.Homes.test"):
        r = _map(cloud, alice, host)
        assert r.status_code == 201, r.text
    wait_for(
        lambda: (
            {"alice.homes.test", "www.alice.homes.test"} <= {m["host"] for m in live_routes(cloud)}
        ),
        timeout=15,
        what="label routes",
    )
    for host in ("alice.homes.test", "www.alice.homes.test"):
        assert alice.api.delete(alice.url(cloud, f"/proxy-mappings/{host}"), timeout=10).ok


def test_a_label_is_chosen_at_claim_time_or_refused_naming_the_field(
    cloud: CloudSite, tmp_path: Path
) -> None:
    chosen = tenant(cloud, tmp_path, "carol", label="Carols-Lab")
    assert chosen.home["base_domain"] == "carols-lab.homes.test"
    cloud.create_user("dora", "Dora-pass-77")
    api = cloud.api(cloud.token("dora", "Dora-pass-77"))
    for label, status in (("bad label", 400), ("carols-lab", 409), ("x" * 64, 422)):
        r = api.post(f"{cloud.url}/api/homes", json={"public_key": chosen.public_key, "label": label},
                     timeout=10)  # fmt: skip
        assert r.status_code == status and r.json()["field"] == "label", r.text
    assert api.get(f"{cloud.url}/api/homes", timeout=5).json() == []


# --- proving a custom domain -------------------------------------------------------------------


def test_a_custom_domain_goes_from_unverified_to_verified_once_its_txt_record_holds_the_token(
    cloud: CloudSite, dns: MockDns, alice: Tenant
) -> None:
    r = alice.api.post(alice.url(cloud, "/domains"), json={"name": "Alice-Shop.TEST"}, timeout=10)
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["name"] == "alice-shop.test" and added["status"] == "unverified"
    record = added["verification"]
    assert record["type"] == "TXT" and record["name"] == "_cloudathome.alice-shop.test"
    assert len(record["value"]) >= 32

    refused = _map(cloud, alice, "www.alice-shop.test")
    assert refused.status_code == 403 and refused.json()["field"] == "host"
    step = refused.json()["detail"]
    assert "_cloudathome.alice-shop.test" in step and record["value"] in step
    assert "/domains/alice-shop.test/verify" in step

    failed = _verify(cloud, alice, "alice-shop.test", until="failed")
    assert failed["reason"] == "no TXT record at _cloudathome.alice-shop.test"
    dns.add_txt(record["name"], "someone-elses-token")
    assert _verify(cloud, alice, "alice-shop.test", until="failed")["reason"] == (
        "the record holds another value"
    )
    dns.clear_txt(record["name"])
    dns.add_txt(record["name"], f'"{record["value"]}" ')
    assert "quotes or spaces" in _verify(cloud, alice, "alice-shop.test", until="failed")["reason"]
    dns.clear_txt(record["name"])
    dns.add_txt(record["name"], "someone-elses-token")
    dns.add_txt(record["name"], record["value"])  # one of several values is enough
    verified = _verify(cloud, alice, "alice-shop.test", until="verified")
    assert verified["reason"] == "" and verified["failures"] == 0 and verified["verified"]

    for host in ("alice-shop.test", "www.alice-shop.test", "a.b.alice-shop.test"):
        r = _map(cloud, alice, host)
        assert r.status_code == 201, r.text
    wait_for(lambda: "a.b.alice-shop.test" in {m["host"] for m in live_routes(cloud)}, timeout=15)


def test_a_verified_domain_whose_record_is_gone_loses_its_routes_at_the_third_daily_check(
    cloud: CloudSite, dns: MockDns, alice: Tenant
) -> None:
    name = "gone.test"
    _proven(cloud, dns, alice, name)
    assert _map(cloud, alice, f"www.{name}").status_code == 201
    wait_for(lambda: f"www.{name}" in {m["host"] for m in live_routes(cloud)}, timeout=15)
    dns.clear_txt(f"_cloudathome.{name}")
    # Drive beat's schedule: make the daily check due and run the job that queues due checks.
    make_due = (
        "import datetime; from django.utils import timezone; "
        "from cloud.domains.models import Domain; from cloud.domains import services; "
        f"Domain.objects.filter(name={name!r}).update(next_check=timezone.now() - datetime.timedelta(seconds=1)); "
        "print(services.domains_due())"
    )
    for check in (1, 2, 3):
        before = _domain(cloud, alice, name)["checked"]
        assert _shell(cloud, make_due) == "1"
        domain = wait_for(lambda b=before: (d := _domain(cloud, alice, name))["checked"] != b and d,
                          timeout=20, what=f"daily check {check}")  # fmt: skip
        assert domain["failures"] == check
        live = {m["host"] for m in live_routes(cloud)}
        if check < 3:
            assert domain["status"] == "verified", domain
            assert f"failed check {check} of 3" in domain["reason"]
            assert f"www.{name}" in live
            next_check = domain["next_check"]
            assert next_check > domain["checked"]  # a day later: the daily schedule
        else:
            assert domain["status"] == "failed", domain
            assert domain["reason"].startswith(f"no TXT record at _cloudathome.{name}")
            assert "3 daily checks failed, so its routes were removed" in domain["reason"]
    wait_for(lambda: f"www.{name}" not in {m["host"] for m in live_routes(cloud)}, timeout=10,
             what="the route removed")  # fmt: skip
    listed = alice.api.get(alice.url(cloud, "/proxy-mappings"), timeout=10).json()
    assert f"www.{name}" not in {m["host"] for m in listed}
    assert _map(cloud, alice, f"www.{name}").status_code == 403


# --- takeovers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice_corp(cloud: CloudSite, dns: MockDns, alice: Tenant) -> str:
    """A verified domain of alice's, with one route, that bob then tries to take."""
    _proven(cloud, dns, alice, "alice-corp.test")
    assert _map(cloud, alice, "www.alice-corp.test").status_code == 201
    return "alice-corp.test"


@pytest.mark.parametrize(
    "host",
    [
        "alice-corp.test",  # another tenant's verified domain
        "www.alice-corp.test",  # ... and a name below it
        "WWW.Alice-Corp.TEST",  # differing only in case
        "www.alice-corp.test.",  # ... or a trailing dot
        "alice.homes.test",  # another home's base label
        "x.alice.homes.test",
        "homes.test",  # the base domain itself
        PUBLIC_HOST,  # the cloud's own name
        f"api.{PUBLIC_HOST}",
        "localhost.localdomain",
        "x.localhost",
        "co.uk",  # public suffixes
        "github.io",
        RESERVED,  # the operator's list
    ],
)
def test_taking_a_name_the_home_does_not_own_is_refused_and_never_reaches_haproxy(
    cloud: CloudSite, alice: Tenant, bob: Tenant, alice_corp: str, host: str
) -> None:
    for scheme in ("https", "http"):
        r = _map(cloud, bob, host, scheme)
        assert r.status_code in (400, 403), r.text
        assert r.json()["field"] == "host"
    normalized = host.lower().rstrip(".")
    bobs = {m["tunnel_port"] for m in live_routes(cloud) if m["host"] == normalized}
    assert bob.home["port_base"] not in bobs
    assert f"{normalized} {bob.home['port_base']}" not in _map_files(cloud)
    assert "www.alice-corp.test" in {m["host"] for m in live_routes(cloud)}  # alice keeps hers


@pytest.mark.parametrize(
    "name",
    [
        "homes.test",
        "bob.homes.test",
        "alice.homes.test",
        PUBLIC_HOST,
        "example.test",  # above the cloud's own name
        "localhost.localdomain",
        "x.localhost",
        "co.uk",
        "github.io",
        RESERVED,
    ],
)
def test_reserved_names_cannot_even_be_added_as_custom_domains(
    cloud: CloudSite, bob: Tenant, name: str
) -> None:
    r = bob.api.post(bob.url(cloud, "/domains"), json={"name": name}, timeout=10)
    assert r.status_code == 403 and r.json()["field"] == "name", r.text
    assert name not in {
        d["name"] for d in bob.api.get(bob.url(cloud, "/domains"), timeout=10).json()
    }


@pytest.mark.parametrize("name", ["alice-corp.test", "shop.alice-corp.test"])
def test_proving_another_tenants_verified_domain_or_a_name_below_it_fails_even_with_the_record(
    cloud: CloudSite, dns: MockDns, alice: Tenant, bob: Tenant, alice_corp: str, name: str
) -> None:
    r = bob.api.post(bob.url(cloud, "/domains"), json={"name": name}, timeout=10)
    assert r.status_code == 201, r.text
    dns.add_txt(f"_cloudathome.{name}", r.json()["verification"]["value"])
    try:
        failed = _verify(cloud, bob, name, until="failed")
        assert failed["reason"] == "alice-corp.test is owned by another home"
        assert _map(cloud, bob, f"www.{name}").status_code == 403
        assert _domain(cloud, alice, alice_corp)["status"] == "verified"
    finally:
        bob.api.delete(bob.url(cloud, f"/domains/{name}"), timeout=10)


def test_proving_a_domain_above_another_tenants_verified_domain_fails(
    cloud: CloudSite, dns: MockDns, alice: Tenant, bob: Tenant
) -> None:
    _proven(cloud, dns, alice, "shop.corp-above.test")
    r = bob.api.post(bob.url(cloud, "/domains"), json={"name": "corp-above.test"}, timeout=10)
    assert r.status_code == 201, r.text
    dns.add_txt("_cloudathome.corp-above.test", r.json()["verification"]["value"])
    failed = _verify(cloud, bob, "corp-above.test", until="failed")
    assert failed["reason"] == "shop.corp-above.test is owned by another home"
    assert _map(cloud, bob, "corp-above.test").status_code == 403


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("bad name.test", 400),
        ('"quoted.test"', 400),
        ("evil.test;reload", 400),
        ("line.test\nset map x", 400),
        ("ünïcode.test", 400),  # IDNA (xn--) form only
        (("a" * 60 + ".") * 4 + "abcde.test", 422),  # 254 characters
        ("*.wild.test", 400),
        ("a..b.test", 400),
        ("single", 400),
        ("", 400),
    ],
)
def test_malformed_domain_names_are_refused_naming_the_field(
    cloud: CloudSite, bob: Tenant, name: str, status: int
) -> None:
    before = bob.api.get(bob.url(cloud, "/domains"), timeout=10).json()
    r = bob.api.post(bob.url(cloud, "/domains"), json={"name": name}, timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["field"] == "name"
    assert bob.api.get(bob.url(cloud, "/domains"), timeout=10).json() == before


def test_an_idna_name_is_accepted_in_its_xn_form(cloud: CloudSite, bob: Tenant) -> None:
    r = bob.api.post(bob.url(cloud, "/domains"), json={"name": "xn--bcher-kva.test"}, timeout=10)
    assert r.status_code == 201, r.text
    assert (
        bob.api.delete(bob.url(cloud, "/domains/xn--bcher-kva.test"), timeout=10).status_code == 204
    )


def test_another_tenant_cannot_see_or_touch_my_domains(
    cloud: CloudSite, alice: Tenant, bob: Tenant, alice_corp: str
) -> None:
    for method, path in (("get", "/domains"), ("get", f"/domains/{alice_corp}"),
                         ("delete", f"/domains/{alice_corp}"), ("post", f"/domains/{alice_corp}/verify")):  # fmt: skip
        assert getattr(bob.api, method)(alice.url(cloud, path), timeout=10).status_code == 404
    assert _domain(cloud, alice, alice_corp)["status"] == "verified"


# --- administrators ------------------------------------------------------------------------------


def _admin_web(cloud: CloudSite) -> requests.Session:
    web = requests.Session()
    login = f"{cloud.url}/admin/login/"
    web.get(login, timeout=10)
    r = web.post(login, timeout=10, headers={"Referer": login},
                 data={"username": "admin", "password": cloud.admin_password,
                       "csrfmiddlewaretoken": web.cookies["cah_cloud_csrftoken"], "next": "/admin/"})  # fmt: skip
    assert r.ok and "cah_cloud_session" in web.cookies
    return web


def test_an_administrator_sees_every_domain_and_revokes_one_whose_routes_go_within_a_second(
    cloud: CloudSite, dns: MockDns, alice: Tenant
) -> None:
    _proven(cloud, dns, alice, "revoked.test")
    assert _map(cloud, alice, "www.revoked.test").status_code == 201
    wait_for(lambda: "www.revoked.test" in {m["host"] for m in live_routes(cloud)}, timeout=15)
    web = _admin_web(cloud)
    listing = web.get(f"{cloud.url}/admin/domains/domain/?q=revoked.test", timeout=10)
    assert "revoked.test" in listing.text and "alice" in listing.text and "verified" in listing.text
    pk = json.loads(
        _shell(cloud, "from cloud.domains.models import Domain; print(Domain.objects.get(name='revoked.test').pk)")
    )  # fmt: skip
    admin = cloud.api(cloud.token("admin", cloud.admin_password))
    started = time.monotonic()
    r = web.post(f"{cloud.url}/admin/domains/domain/", timeout=10,
                 headers={"Referer": f"{cloud.url}/admin/domains/domain/"},
                 data={"action": "revoke", "_selected_action": str(pk), "index": "0",
                       "csrfmiddlewaretoken": web.cookies["cah_cloud_csrftoken"]})  # fmt: skip
    assert r.ok and "Revoked 1 domain" in r.text
    wait_for(
        lambda: "www.revoked.test" not in {m["host"] for m in live_routes(cloud, admin)},
        timeout=5,
        interval=0.02,
        what="the revoked route gone",
    )
    assert time.monotonic() - started < 1.0
    revoked = _domain(cloud, alice, "revoked.test")
    assert revoked["status"] == "failed" and revoked["reason"] == "revoked by an administrator"
    # The tenant's dashboard says why.
    web = requests.Session()
    web.get(f"{cloud.url}/login/", timeout=10)
    web.post(f"{cloud.url}/login/", timeout=10, headers={"Referer": f"{cloud.url}/login/"},
             data={"username": "alice", "password": alice.password,
                   "csrfmiddlewaretoken": web.cookies["cah_cloud_csrftoken"]})  # fmt: skip
    assert "revoked by an administrator" in web.get(cloud.url, timeout=10).text


def test_the_schema_documents_the_domain_endpoints(cloud: CloudSite) -> None:
    paths = requests.get(f"{cloud.url}/api/schema/", timeout=10).json()["paths"]
    assert set(paths["/api/homes/{slug}/domains"]) == {"get", "post"}
    assert set(paths["/api/homes/{slug}/domains/{name}"]) == {"get", "delete"}
    assert set(paths["/api/homes/{slug}/domains/{name}/verify"]) == {"post"}


# --- races on PostgreSQL -------------------------------------------------------------------------

RACE_ROUNDS = 30

# Runs inside the cloud (its PostgreSQL, its broker, its HAProxy): per round, alice and bob
# prove one name (or nested names), the record of each in DNS, checked by two threads released
# at once; then both map a name below it at the same moment (https and http), and HAProxy must
# route the owner's port alone. The round's domains are deleted after (a home holds at most 50).
_RACE = """
import json, threading, time
import requests
from django.db import connections
from cloud.domains import services
from cloud.domains.models import Claim, ClaimKind, Domain
from cloud.edge import services as edge
from cloud.homes import services as homes
from cloud.homes.models import Home, ProxyMapping

contenders = [Home.objects.get(slug=slug) for slug in {slugs!r}]
schemes = ("https", "http")

def race(*calls):
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)
    def run(i, call):
        try:
            barrier.wait(timeout=10)
            results[i] = call()
        except Exception as exc:
            results[i] = exc
        finally:
            connections.close_all()
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads: t.start()
    for t in threads: t.join(timeout=60)
    return results

out = {{"rounds": 0, "routed": 0, "wins": {{h.slug: 0 for h in contenders}}}}
for n in range({rounds}):
    for kind in ("same", "nested"):
        # Under a shared branch (race.test) in even rounds, right under the TLD in odd ones.
        top = f"r{{n}}-{{kind}}.race.test" if n % 2 == 0 else f"r{{n}}-{{kind}}-race.test"
        names = [top, top] if kind == "same" else [top, f"sub.{{top}}"]
        if n % 4 >= 2:
            names.reverse()  # each side asks for the outer name in turn
        domains = [services.domain_add(home, name) for home, name in zip(contenders, names)]
        for d in domains:
            requests.post({dns!r} + "/set-txt", json={{"host": d.record_name + ".", "value": d.token}},
                          timeout=10).raise_for_status()
        race(*[lambda d=d: services.domain_check(d.pk) for d in domains])
        rows = [Domain.objects.get(pk=d.pk) for d in domains]
        owned = list(Claim.objects.filter(name__in=names).exclude(kind=ClaimKind.BRANCH)
                     .values_list("home__slug", flat=True))
        verified = [d.home.slug for d in rows if d.status == "verified"]
        assert len(owned) == 1 and verified == owned, (names, owned, [(d.status, d.reason) for d in rows])
        assert all(d.reason.endswith("is owned by another home") for d in rows if d.status != "verified"), rows
        out["rounds"] += 1
        out["wins"][owned[0]] += 1
        host = f"www.{{max(names, key=len)}}"
        results = race(*[lambda home=home, scheme=scheme: homes.mapping_create(home, host, scheme, home.port_base, False)
                         for home, scheme in zip(contenders, schemes)])
        mapped = set(ProxyMapping.objects.filter(host=host).values_list("home__slug", flat=True))
        assert mapped == {{owned[0]}}, (host, mapped, results)
        assert sum(not isinstance(r, Exception) for r in results) == 1, results
        assert all(getattr(r, "status", None) == 403 for r in results if isinstance(r, Exception)), results
        winner = [home.slug for home in contenders].index(owned[0])
        expected = {{(schemes[winner], contenders[winner].port_base)}}
        deadline = time.monotonic() + 15
        while (live := {{(r.scheme, r.port) for r in edge.edge_live_routes() if r.host == host}}) != expected:
            assert time.monotonic() < deadline, (host, live, expected)
            time.sleep(0.05)
        out["routed"] += 1
        for d in domains:
            services.domain_delete(Domain.objects.get(pk=d.pk))
print(json.dumps(out))
"""


def test_two_tenants_racing_for_one_name_on_postgresql_end_with_one_owner_and_one_set_of_routes(
    cloud: CloudSite, dns: MockDns, alice: Tenant, bob: Tenant
) -> None:
    code = _RACE.format(
        slugs=[alice.home["slug"], bob.home["slug"]], dns=dns.management_url, rounds=RACE_ROUNDS
    )
    out = json.loads(_shell(cloud, code))
    assert out["rounds"] == out["routed"] == 2 * RACE_ROUNDS
    assert sum(out["wins"].values()) == 2 * RACE_ROUNDS
    print(f"race: {2 * RACE_ROUNDS} rounds, wins {out['wins']}")
    wait_for(
        lambda: not any("race.test" in m["host"] for m in live_routes(cloud)),
        timeout=15,
        what="routes gone with their domains",
    )


def test_two_tenants_mapping_one_name_at_the_same_moment_through_the_api_leave_only_the_owners_route(
    cloud: CloudSite, dns: MockDns, alice: Tenant, bob: Tenant
) -> None:
    _proven(cloud, dns, alice, "api-race.test")
    hosts = [f"h{n}.api-race.test" for n in range(10)]
    with ThreadPoolExecutor(2) as pool:
        for host in hosts:
            barrier = threading.Barrier(2)

            def ask(
                ask: tuple[Tenant, str], host: str = host, barrier: threading.Barrier = barrier
            ) -> tuple[str, int]:
                who, scheme = ask
                barrier.wait(timeout=10)
                return who.username, _map(cloud, who, host, scheme).status_code

            codes = dict(pool.map(ask, [(alice, "https"), (bob, "http")]))
            assert codes == {"alice": 201, "bob": 403}, (host, codes)
    expected = {(host, "https", alice.home["port_base"]) for host in hosts}
    wait_for(
        lambda: (
            {
                (m["host"], m["scheme"], m["tunnel_port"])
                for m in live_routes(cloud)
                if m["host"].endswith(".api-race.test")
            }
            == expected
        ),
        timeout=15,
        what="only alice's routes",
    )
