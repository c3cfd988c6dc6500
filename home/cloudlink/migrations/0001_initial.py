from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="LinkCheck",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("unknown", "Unknown"), ("ok", "Ok"), ("failed", "Failed")],
                        default="unknown",
                        max_length=8,
                    ),
                ),
                ("reason", models.TextField(blank=True)),
                ("checks", models.JSONField(blank=True, default=list)),
                ("checked_at", models.DateTimeField(blank=True, null=True)),
                ("queued_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "cloud link check",
            },
        ),
    ]
