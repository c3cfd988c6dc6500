"""Issue 12: the free-form `post_renew_command` is gone; what runs after a renewal is one of
the operator's named actions. A stored command is not carried over as runnable: its text is
kept in `action_output` with a note, so the operator sees what to turn into an action."""

from django.db import migrations, models


def keep_old_commands_as_a_note(apps, schema_editor):
    Domain = apps.get_model("certs", "Domain")
    for domain in Domain.objects.exclude(post_renew_command=[]):
        argv = " ".join(domain.post_renew_command or [])
        if not argv:
            continue
        domain.action_output = (
            f"The upgrade removed this domain's post-renewal command ({argv}): it no longer "
            "runs. Ask the operator to add it to CLOUDATHOME_POST_RENEW_ACTIONS and pick it "
            "by name."
        )
        domain.save(update_fields=["action_output"])


class Migration(migrations.Migration):
    dependencies = [("certs", "0003_ownership")]

    operations = [
        migrations.AddField(
            model_name="domain",
            name="post_renew_action",
            field=models.CharField(blank=True, max_length=40),
        ),
        migrations.AddField(
            model_name="domain",
            name="action_ran",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="domain",
            name="action_exit",
            field=models.IntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="domain",
            name="action_output",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(keep_old_commands_as_a_note, migrations.RunPython.noop),
        migrations.RemoveField(model_name="domain", name="post_renew_command"),
    ]
