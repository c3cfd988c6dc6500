# The tables as home.domains left them (same names, same columns), so that a database the
# old app migrated counts this migration as applied (`replaces`) and a new database gets the
# same schema; 0002 then renames the tables and hands ProxyEntry to the tunnels app.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    replaces = [("domains", "0001_initial"), ("domains", "0002_renewal_backoff")]

    dependencies = [
        ("tunnels", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="Domain",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=253, unique=True)),
                ("email", models.EmailField(max_length=254)),
                ("cert_dir", models.CharField(max_length=1024)),
                (
                    "challenge",
                    models.CharField(
                        choices=[("http-01", "Http01"), ("tls-alpn-01", "Tlsalpn01")],
                        default="http-01",
                        max_length=12,
                    ),
                ),
                ("post_renew_command", models.JSONField(blank=True, default=list)),
                (
                    "cert_status",
                    models.CharField(
                        choices=[
                            ("none", "None"),
                            ("pending", "Pending"),
                            ("valid", "Valid"),
                            ("failed", "Failed"),
                        ],
                        default="none",
                        max_length=8,
                    ),
                ),
                ("cert_path", models.CharField(blank=True, max_length=1024)),
                ("cert_expiry", models.DateTimeField(blank=True, null=True)),
                ("cert_issued", models.DateTimeField(blank=True, null=True)),
                ("renew_failures", models.PositiveIntegerField(default=0)),
                ("renew_after", models.DateTimeField(blank=True, null=True)),
                (
                    "job_state",
                    models.CharField(
                        choices=[
                            ("idle", "Idle"),
                            ("pending", "Pending"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("failed", "Failed"),
                        ],
                        default="idle",
                        max_length=8,
                    ),
                ),
                ("job_step", models.CharField(blank=True, max_length=200)),
                ("job_error", models.TextField(blank=True)),
                ("job_updated", models.DateTimeField(auto_now=True)),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["name"],
                "db_table": "domains_domain",
            },
        ),
        migrations.CreateModel(
            name="ProxyEntry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
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
                "db_table": "domains_proxyentry",
            },
        ),
    ]
