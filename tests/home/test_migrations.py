"""Upgrading a database that the removed `home.domains` app migrated: Domain moves to the
certs app, ProxyEntry to the tunnels app, and every row, relation, sequence and content type
(so permissions and admin history) survives. Runs on SQLite and, with DATABASE_URL, on
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from home.certs.models import CertStatus, Domain
from home.tunnels.models import ProxyEntry, Tunnel

# The schema home.domains left behind: certs 0001 recreates it table for table.
BEFORE_THE_MOVE = [("certs", "0001_initial"), ("tunnels", "0001_initial")]
OLD_APP_MIGRATIONS = [("domains", "0001_initial"), ("domains", "0002_renewal_backoff")]

pytestmark = pytest.mark.django_db(transaction=True)


def _migrate(targets: list[tuple[str, str]] | None = None) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    return MigrationExecutor(connection)  # a fresh loader sees what was recorded


@pytest.fixture
def old_database() -> Iterator[dict[str, Any]]:
    """The database as the old code left it: its tables, its migration records, its content
    types, and a few rows; put back to the current state whatever the test does."""
    executor = _migrate(BEFORE_THE_MOVE)
    recorder = MigrationRecorder(connection)
    try:
        # The old app recorded its own two migrations; certs 0001, being their replacement,
        # records them too on a new database, and its own name only once they all are.
        recorder.record_unapplied("certs", "0001_initial")
        for app, name in OLD_APP_MIGRATIONS:
            if (app, name) not in recorder.applied_migrations():
                recorder.record_applied(app, name)
        # Its content types (with their permissions) were labelled "domains".
        for model, label in (("domain", "certs"), ("proxyentry", "tunnels")):
            if not ContentType.objects.filter(app_label="domains", model=model).exists():
                ContentType.objects.filter(app_label=label, model=model).update(app_label="domains")
        ContentType.objects.clear_cache()
        types = {
            model: ContentType.objects.get(app_label="domains", model=model).pk
            for model in ("domain", "proxyentry")
        }
        yield {"types": types, **_old_rows(executor)}
    finally:
        _migrate()
        ContentType.objects.clear_cache()


def _old_rows(executor: MigrationExecutor) -> dict[str, Any]:
    """Rows written through the models as they were (tables domains_domain, domains_proxyentry)."""
    old = executor.loader.project_state(BEFORE_THE_MOVE).apps
    domain_model = old.get_model("certs", "Domain")
    entry_model = old.get_model("certs", "ProxyEntry")
    tunnel_model = old.get_model("tunnels", "Tunnel")
    assert domain_model._meta.db_table == "domains_domain"
    assert entry_model._meta.db_table == "domains_proxyentry"
    expiry = timezone.now().replace(microsecond=0) + timezone.timedelta(days=60)
    nas = domain_model.objects.create(
        name="nas.example.com",
        email="me@example.com",
        cert_dir="/srv/certs",
        cert_status=CertStatus.VALID,
        cert_path="/srv/certs/nas.example.com",
        cert_expiry=expiry,
        renew_failures=2,
        post_renew_command=["/usr/sbin/nginx", "-s", "reload"],
    )
    shop = domain_model.objects.create(
        name="shop.example.com", email="s@example.com", cert_dir="/c"
    )
    tunnels = [
        tunnel_model.objects.create(name=f"entry {n}", remote_port=2100 + i, local_port=8443 + i)
        for i, n in enumerate(["nas.example.com", "www.shop.example.com"])
    ]
    temporary = tunnel_model.objects.create(
        name="acme shop.example.com", remote_port=2109, local_port=5002, temporary=True
    )
    entries = [
        entry_model.objects.create(
            domain=nas, hostname="nas.example.com", home_port=8443, tunnel=tunnels[0]
        ),
        entry_model.objects.create(
            domain=shop,
            hostname="www.shop.example.com",
            home_port=8444,
            proxy_protocol=True,
            tunnel=tunnels[1],
        ),
    ]
    editor = User.objects.create_user("editor")
    editor.user_permissions.add(
        Permission.objects.get(content_type__app_label="domains", codename="change_domain")
    )
    LogEntry.objects.create(
        user=editor,
        content_type_id=ContentType.objects.get(app_label="domains", model="domain").pk,
        object_id=str(nas.pk),
        object_repr=nas.name,
        action_flag=CHANGE,
    )
    return {
        "domains": {d.pk: (d.name, d.cert_expiry, d.renew_failures) for d in (nas, shop)},
        "entries": {
            e.pk: (e.hostname, e.domain_id, e.tunnel_id, e.proxy_protocol) for e in entries
        },
        "tunnels": {t.pk: t.remote_port for t in [*tunnels, temporary]},
    }


def test_a_database_of_the_old_domains_app_counts_the_recreated_schema_as_applied(
    old_database: dict[str, Any],
) -> None:
    executor = MigrationExecutor(connection)
    assert ("certs", "0001_initial") in executor.loader.applied_migrations
    # The moved apps' own plan (apps that came later, such as traffic, follow their own).
    plan = {
        (m.app_label, m.name)
        for m, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())
        if m.app_label in ("certs", "tunnels")
    }
    assert plan == {
        ("certs", "0002_move_tables"),
        ("certs", "0003_ownership"),
        ("certs", "0004_post_renew_action"),
        ("tunnels", "0002_proxyentry"),
        ("tunnels", "0003_tcp_entries_and_allowlists"),
    }


def test_upgrading_keeps_every_domain_entry_tunnel_and_relation(
    old_database: dict[str, Any],
) -> None:
    _migrate()
    assert {
        d.pk: (d.name, d.cert_expiry, d.renew_failures) for d in Domain.objects.all()
    } == old_database["domains"]
    # The free-form command is not carried over as runnable: no action, a note saying so.
    upgraded = Domain.objects.get(name="nas.example.com")
    assert upgraded.post_renew_action == ""
    assert "(/usr/sbin/nginx -s reload): it no longer runs" in upgraded.action_output
    assert Domain.objects.get(name="shop.example.com").action_output == ""
    assert {
        e.pk: (e.hostname, e.domain_id, e.tunnel_id, e.proxy_protocol)
        for e in ProxyEntry.objects.all()
    } == old_database["entries"]
    assert {t.pk: t.remote_port for t in Tunnel.objects.all()} == old_database["tunnels"]
    nas = Domain.objects.get(name="nas.example.com")
    assert [e.tunnel.remote_port for e in nas.entries.all()] == [2100]
    assert Tunnel.objects.get(remote_port=2101).entry.domain.name == "shop.example.com"


def test_upgrading_keeps_the_content_types_so_permissions_and_admin_history_follow(
    old_database: dict[str, Any],
) -> None:
    _migrate()
    ContentType.objects.clear_cache()
    assert ContentType.objects.get_for_model(Domain).pk == old_database["types"]["domain"]
    assert ContentType.objects.get_for_model(ProxyEntry).pk == old_database["types"]["proxyentry"]
    assert not ContentType.objects.filter(app_label="domains").exists()
    assert User.objects.get(username="editor").has_perm("certs.change_domain")
    edited = LogEntry.objects.get().get_edited_object()
    assert isinstance(edited, Domain) and edited.name == "nas.example.com"


def test_after_the_upgrade_new_rows_get_fresh_ids_and_foreign_keys_still_hold(
    old_database: dict[str, Any],
) -> None:
    _migrate()
    added = Domain.objects.create(name="new.example.com", email="n@example.com", cert_dir="/c")
    assert added.pk not in old_database["domains"]
    tunnel = Tunnel.objects.create(name="entry new.example.com", remote_port=2105, local_port=1)
    entry = ProxyEntry.objects.create(
        domain=added, hostname="new.example.com", home_port=1, tunnel=tunnel
    )
    assert entry.pk not in old_database["entries"]
    Domain.objects.filter(name="shop.example.com").delete()  # cascades to its entry
    assert not ProxyEntry.objects.filter(hostname="www.shop.example.com").exists()
    assert ProxyEntry.objects.filter(hostname="nas.example.com").exists()
