"""The Home Console's API and pages without a cloud: contract paths, auth, validation with
the field named, the error shape, and pages that still render when the cloud is down.

Queued Celery tasks are captured (never run): pytest-django's test transaction never
commits, and django_capture_on_commit_callbacks(execute=False) shows what would be sent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client

from home.accounts.models import ApiToken
from home.cloudlink.services import link
from home.domains.models import Domain, JobState, ProxyEntry
from home.tunnels.models import Tunnel
from workers.local.procs import free_port

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
# Every label is legal; only the total (254 > 253) is not.
LONG_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 58, "com"])
assert len(LONG_NAME) == 254

# DESIGN section 6, with every path parameter written {id}.
CONTRACT_PATHS = {
    "/api/auth/token": {"post"},
    "/api/domains": {"get", "post"},
    "/api/domains/{id}": {"get", "delete"},
    "/api/domains/{id}/renew": {"post"},
    "/api/domains/{id}/proxy-entries": {"get", "post"},
    "/api/proxy-entries/{id}": {"get", "delete"},
    "/api/proxy-entries/{id}/tunnel": {"post"},
    "/api/status": {"get"},
}


@pytest.fixture
def user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def token(client: Client, user: User) -> str:
    response = client.post(
        "/api/auth/token",
        {"username": "alice", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return str(response.json()["token"])


class Api:
    """A script's view of the API: JSON in and out, Bearer token, no cookies."""

    def __init__(self, token: str) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=self.headers)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(
            path, body or {}, content_type="application/json", headers=self.headers
        )

    def delete(self, path: str) -> Any:
        return self.client.delete(path, headers=self.headers)


@pytest.fixture
def api(token: str) -> Api:
    return Api(token)


@pytest.fixture
def cloud_down(tmp_path: Path, settings: Any) -> Iterator[dict[str, Any]]:
    """A registered home whose cloud (API and sshd) listens nowhere: closed loopback ports."""
    key = tmp_path / "id_ed25519"
    key.write_text("not a key\n")
    key.chmod(0o600)
    (tmp_path / "known_hosts").write_text("")
    data = {
        "cloudserver_url": f"http://127.0.0.1:{free_port()}",
        "auth_token": "cah_000000000000_not-a-real-token",
        "home_slug": "hometest01",
        "ssh": {
            "host": "127.0.0.1",
            "port": free_port(),
            "username": "home01_alice",
            "private_key_path": str(key),
            "known_hosts": str(tmp_path / "known_hosts"),
        },
        "ports": {"base": 2100, "count": 10},
    }
    path = tmp_path / "cloudlink.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    settings.CLOUDLINK_CONFIG = path
    link.cache_clear()
    yield data
    link.cache_clear()


def _domain(**overrides: Any) -> dict[str, Any]:
    body = {"name": "nas.example.com", "email": "me@example.com", "cert_dir": "/srv/certs"}
    return body | overrides


def _entry_in_db(domain: Domain, hostname: str = "nas.example.com") -> ProxyEntry:
    """An entry as entry_create would leave it, minus the cloud call this suite cannot make."""
    tunnel = Tunnel.objects.create(name=f"entry {hostname}", remote_port=2103, local_port=8443)
    return ProxyEntry.objects.create(
        domain=domain, hostname=hostname, home_port=8443, tunnel=tunnel
    )


def test_openapi_schema_lists_every_path_of_the_contract(client: Client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    paths = {
        re.sub(r"\{[^}]+\}", "{id}", path): {m for m in methods if m != "parameters"}
        for path, methods in response.json()["paths"].items()
    }
    for path, methods in CONTRACT_PATHS.items():
        assert path in paths, f"{path} missing from the schema"
        assert methods <= paths[path], f"{path}: {paths[path]}"


@pytest.mark.parametrize("path", ["/api/schema/swagger/", "/api/schema/redoc/"])
def test_api_docs_pages_render(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert b"/api/schema/" in response.content


def test_api_refuses_a_request_without_a_token(client: Client) -> None:
    response = client.get("/api/domains")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_api_refuses_an_unknown_token(client: Client, token: str) -> None:
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = client.get("/api/domains", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_a_token_from_the_auth_endpoint_opens_the_api(api: Api) -> None:
    response = api.get("/api/domains")
    assert response.status_code == 200
    assert response.json() == []


def test_the_token_is_stored_only_as_a_digest(token: str) -> None:
    stored = ApiToken.objects.get()
    assert token.startswith(f"cahh_{stored.prefix}_")
    assert token not in (stored.digest, stored.prefix, stored.name)


def test_a_wrong_password_gets_no_token(client: Client, user: User) -> None:
    response = client.post(
        "/api/auth/token",
        {"username": "alice", "password": "wrong"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert "invalid username or password" in response.json()["detail"]
    assert not ApiToken.objects.exists()


def test_guessing_a_password_locks_the_username_out_with_429_in_the_error_shape(
    client: Client, user: User, settings: Any
) -> None:
    def attempt(password: str, address: str) -> Any:
        return client.post(
            "/api/auth/token",
            {"username": "alice", "password": password},
            content_type="application/json",
            REMOTE_ADDR=address,
        )

    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt("wrong", f"127.0.1.{i + 1}").status_code == 403
    locked = attempt("wrong", "127.0.1.100")
    assert locked.status_code == 429
    assert locked.json()["field"] == "username" and "retry in" in locked.json()["detail"]
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert attempt(PASSWORD, "127.0.1.101").status_code == 429  # even the right password
    page = client.post(
        "/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="127.0.1.102"
    )
    assert page.status_code == 429 and b"Too many attempts" in page.content
    assert not ApiToken.objects.exists()


def test_a_few_wrong_passwords_then_the_right_one_get_a_token(client: Client, user: User) -> None:
    for _ in range(3):
        response = client.post(
            "/api/auth/token",
            {"username": "alice", "password": "wrong"},
            content_type="application/json",
        )
        assert response.status_code == 403
    response = client.post(
        "/api/auth/token",
        {"username": "alice", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200


def test_a_disabled_account_loses_its_tokens(api: Api, user: User) -> None:
    user.is_active = False
    user.save()
    assert api.get("/api/domains").status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "nas example.com"),
        ("name", "nås.example.com"),
        ("name", LONG_NAME),
        ("name", "localhost"),
        ("email", "not-an-email"),
        ("cert_dir", "relative/certs"),
        ("challenge", "dns-01"),
        ("post_renew_command", ["nginx", "-s", "reload"]),
    ],
)
def test_adding_a_domain_with_a_bad_field_is_refused_naming_the_field(
    api: Api, field: str, value: Any
) -> None:
    response = api.post("/api/domains", _domain(**{field: value}))
    assert response.status_code in (400, 422), response.content
    body = response.json()
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")
    assert not Domain.objects.exists()


def test_adding_a_domain_answers_201_with_a_pending_job_and_queues_the_certificate(
    api: Api, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api.post("/api/domains", _domain(name="NAS.Example.com"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "nas.example.com"
    assert body["job"]["state"] == "pending"
    assert body["job"]["steps"][0] == {"name": "Queued for a worker", "status": "current"}
    assert body["cert_status"] == "none"
    assert body["entries"] == []
    assert len(queued) == 1
    assert api.get(f"/api/domains/{body['id']}").json()["name"] == "nas.example.com"


def test_adding_the_same_domain_twice_is_a_conflict(api: Api) -> None:
    assert api.post("/api/domains", _domain()).status_code == 201
    response = api.post("/api/domains", _domain())
    assert response.status_code == 409
    assert response.json()["field"] == "name"
    assert Domain.objects.count() == 1


@pytest.mark.parametrize(
    "path",
    ["/api/domains/424242", "/api/proxy-entries/424242", "/api/domains/424242/proxy-entries"],
)
def test_an_unknown_id_is_a_404_with_a_detail(api: Api, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404
    assert "424242" in response.json()["detail"]


def test_an_id_beyond_the_database_range_is_a_422_naming_it(api: Api) -> None:
    response = api.get(f"/api/domains/{2**70}")
    assert response.status_code == 422
    assert response.json()["field"] == "domain_id"


def test_renew_queues_a_forced_run_and_refuses_a_second_while_it_waits(
    api: Api, django_capture_on_commit_callbacks: Any
) -> None:
    domain = Domain.objects.create(name="nas.example.com", email="me@example.com", cert_dir="/c")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        first = api.post(f"/api/domains/{domain.pk}/renew")
        second = api.post(f"/api/domains/{domain.pk}/renew")
    assert first.status_code == 202
    assert first.json()["job"]["state"] == "pending"
    assert second.status_code == 409
    assert len(queued) == 1


def test_a_domain_shows_its_entries_with_the_tunnel_state(api: Api) -> None:
    domain = Domain.objects.create(name="nas.example.com", email="me@example.com", cert_dir="/c")
    entry = _entry_in_db(domain)
    body = api.get(f"/api/domains/{domain.pk}").json()
    assert [e["id"] for e in body["entries"]] == [entry.pk]
    got = api.get(f"/api/proxy-entries/{entry.pk}").json()
    assert got["tunnel_port"] == 2103
    assert got["tunnel"] == {
        "desired": "closed",
        "state": "closed",
        "pid": None,
        "since": None,
        "last_error": "",
    }


def test_opening_a_tunnel_records_the_wish_and_queues_the_reconciler(
    api: Api, django_capture_on_commit_callbacks: Any
) -> None:
    domain = Domain.objects.create(name="nas.example.com", email="me@example.com", cert_dir="/c")
    entry = _entry_in_db(domain)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api.post(f"/api/proxy-entries/{entry.pk}/tunnel", {"open": True})
    assert response.status_code == 202
    assert response.json()["tunnel"]["desired"] == "open"
    assert response.json()["tunnel"]["state"] == "opening"
    assert len(queued) == 1


def test_a_tunnel_request_without_open_is_a_422_naming_it(api: Api) -> None:
    domain = Domain.objects.create(name="nas.example.com", email="me@example.com", cert_dir="/c")
    entry = _entry_in_db(domain)
    response = api.post(f"/api/proxy-entries/{entry.pk}/tunnel", {})
    assert response.status_code == 422
    assert response.json()["field"] == "open"
    assert not Tunnel.objects.get().desired_open


def test_an_entry_is_not_stored_when_the_cloud_is_unreachable(
    api: Api, cloud_down: dict[str, Any]
) -> None:
    domain = Domain.objects.create(name="nas.example.com", email="me@example.com", cert_dir="/c")
    response = api.post(f"/api/domains/{domain.pk}/proxy-entries", {"home_port": 8443})
    assert response.status_code == 502
    assert "cannot reach the cloud" in response.json()["detail"]
    assert not ProxyEntry.objects.exists()
    assert not Tunnel.objects.exists()


def test_the_status_endpoint_reports_each_failed_check_when_the_cloud_is_down(
    api: Api, cloud_down: dict[str, Any]
) -> None:
    response = api.get("/api/status")
    assert response.status_code == 200
    checks = {c["name"]: c for c in response.json()}
    assert set(checks) == {"api", "token", "ssh"}
    assert not any(c["ok"] for c in checks.values())
    assert "cannot reach the cloud" in checks["api"]["detail"]


def test_session_calls_to_the_api_need_the_csrf_token(user: User) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    refused = browser.post("/api/domains", _domain(), content_type="application/json")
    assert refused.status_code == 403
    assert not Domain.objects.exists()
    browser.get("/domains/add/")  # a page with a form sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    accepted = browser.post(
        "/api/domains", _domain(), content_type="application/json", headers={"X-CSRFToken": csrf}
    )
    assert accepted.status_code == 201


def test_the_login_page_renders(client: Client) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content


@pytest.mark.parametrize("path", ["/", "/domains/", "/domains/add/"])
def test_pages_send_a_visitor_to_the_login_page(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_dashboard_renders_when_the_cloud_is_unreachable(
    client: Client, user: User, cloud_down: dict[str, Any]
) -> None:
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "hometest01" in page
    assert "home01_alice@127.0.0.1:" in page
    assert "2100 \N{EN DASH} 2109" in page
    assert "cannot reach the cloud" in page
    assert page.count('class="badge bad"') >= 3


def test_the_domain_form_shows_the_service_error_next_to_the_field(
    client: Client, user: User
) -> None:
    client.force_login(user)
    form = _domain(challenge="http-01", cert_dir="certs", post_renew_command="")
    response = client.post("/domains/add/", form)
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(r'has-error">\s*<label for="id_cert_dir"', page)
    assert "must be an absolute path" in page
    assert not Domain.objects.exists()


def test_the_domain_page_shows_the_certificate_the_job_and_the_entries(
    client: Client, user: User
) -> None:
    domain = Domain.objects.create(
        name="nas.example.com",
        email="me@example.com",
        cert_dir="/srv/certs",
        job_state=JobState.RUNNING,
        job_step="challenge ready",
        cert_path="/srv/certs/nas.example.com",
    )
    _entry_in_db(domain)
    client.force_login(user)
    response = client.get(f"/domains/{domain.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<li class="done">Temporary tunnel open</li>' in page
    assert '<li class="current">Challenge ready</li>' in page
    assert "/srv/certs/nas.example.com" in page
    assert "127.0.0.1:8443" in page
    assert "fetch(url" in page  # polls while the job runs


def test_a_token_whose_secret_contains_underscores_is_accepted(client: Client, user: User) -> None:
    # base64url secrets contain "_" about half the time; the parser must split only once.
    token = "cahh_0123456789ab_se_cr_et"
    ApiToken.objects.create(
        user=user, prefix="0123456789ab", digest=hashlib.sha256(token.encode()).hexdigest()
    )
    response = client.get("/api/domains", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_deleting_a_domain_without_entries_removes_it(api: Api) -> None:
    domain = Domain.objects.create(name="nas.example.com", email="me@example.com", cert_dir="/c")
    assert api.delete(f"/api/domains/{domain.pk}").status_code == 204
    assert not Domain.objects.exists()
    assert api.delete(f"/api/domains/{domain.pk}").status_code == 404


def test_the_domain_form_adds_the_domain_and_queues_its_certificate(
    client: Client, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(user)
    form = _domain(challenge="tls-alpn-01", post_renew_command="/usr/sbin/nginx -s reload")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post("/domains/add/", form)
    domain = Domain.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/domains/{domain.pk}/"
    assert domain.post_renew_command == ["/usr/sbin/nginx", "-s", "reload"]
    assert domain.challenge == "tls-alpn-01"
    assert len(queued) == 1


def test_the_open_tunnel_button_records_the_wish(
    client: Client, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    domain = Domain.objects.create(name="nas.example.com", email="me@example.com", cert_dir="/c")
    entry = _entry_in_db(domain)
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(f"/entries/{entry.pk}/tunnel/", {"open": "1"})
    assert response.status_code == 302
    assert Tunnel.objects.get().desired_open
    assert len(queued) == 1


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_a_write_is_saved_and_answers_a_json_503_saying_so(
    api: Api, settings: Any
) -> None:
    # The test settings' broker is a unix socket in a throwaway state dir where no Redis runs.
    assert settings.REDIS_URL.startswith("redis+socket://")
    domain = Domain.objects.create(name="nas.example.com", email="me@example.com", cert_dir="/c")
    entry = _entry_in_db(domain)
    response = api.post(f"/api/proxy-entries/{entry.pk}/tunnel", {"open": True})
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    assert "saved" in response.json()["detail"] and "once it is back" in response.json()["detail"]
    assert response["Retry-After"] == "60"
    assert Tunnel.objects.get().desired_open  # the desired state the supervisor applies
