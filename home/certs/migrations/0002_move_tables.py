# Domain keeps its rows under its new app's table name; ProxyEntry moves to the tunnels app
# (its table renamed here, its model created in tunnels 0002 without touching the
# database). Foreign keys follow the renamed tables; the content types (and so permissions
# and admin history) are relabelled rather than recreated.

from django.db import migrations

MOVED = {"domain": "certs", "proxyentry": "tunnels"}


def relabel(apps, schema_editor, forwards=True):
    content_type = apps.get_model("contenttypes", "ContentType")
    types = content_type.objects.using(schema_editor.connection.alias)
    for model, app_label in MOVED.items():
        old, new = ("domains", app_label) if forwards else (app_label, "domains")
        if not types.filter(app_label=new, model=model).exists():
            types.filter(app_label=old, model=model).update(app_label=new)


def relabel_back(apps, schema_editor):
    relabel(apps, schema_editor, forwards=False)


class Migration(migrations.Migration):
    dependencies = [
        ("certs", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelTable(name="domain", table=None),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterModelTable(name="proxyentry", table="tunnels_proxyentry"),
            ],
            state_operations=[migrations.DeleteModel(name="ProxyEntry")],
        ),
        migrations.RunPython(relabel, relabel_back),
    ]
