# ProxyEntry joins the tunnels app: its table was renamed to tunnels_proxyentry by certs
# 0002, so only the migration state changes here.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tunnels", "0001_initial"),
        ("certs", "0002_move_tables"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ProxyEntry",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("hostname", models.CharField(max_length=253, unique=True)),
                        ("home_port", models.PositiveIntegerField()),
                        ("proxy_protocol", models.BooleanField(default=False)),
                        ("created", models.DateTimeField(auto_now_add=True)),
                        (
                            "domain",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="entries",
                                to="certs.domain",
                            ),
                        ),
                        (
                            "tunnel",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="entry",
                                to="tunnels.tunnel",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name_plural": "proxy entries",
                        "ordering": ["hostname"],
                    },
                ),
            ],
        ),
    ]
