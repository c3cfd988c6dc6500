"""Provision the home slots (CLOUDATHOME_HOME_SLOTS, 10 by default, index 0..n-1)."""

from django.conf import settings
from django.db import migrations


def provision(apps, schema_editor):
    Home = apps.get_model("homes", "Home")
    existing = set(Home.objects.values_list("index", flat=True))
    Home.objects.bulk_create(
        [Home(index=i) for i in range(settings.HOME_SLOTS) if i not in existing]
    )


class Migration(migrations.Migration):
    dependencies = [("homes", "0001_initial")]
    operations = [migrations.RunPython(provision, migrations.RunPython.noop)]
