"""The add-a-proxy-entry form; it only shapes input, the services validate it (and their
errors are shown next to the field they name)."""

from __future__ import annotations

from django import forms

from workers.common import networks


class EntryForm(forms.Form):
    scheme = forms.ChoiceField(
        choices=[("https", "https, by hostname"), ("tcp", "tcp, a public port of the cloud")],
        label="Kind",
        help_text="tcp publishes any TCP service (ssh, a game server, MQTT) on a port of its own.",
    )
    hostname = forms.CharField(
        max_length=253,
        required=False,
        help_text="The public hostname visitors use (TLS passes through to your service); "
        "none for tcp.",
    )
    home_port = forms.IntegerField(
        min_value=1,
        max_value=65535,
        label="Home port",
        help_text="Your HTTPS service on this machine: <code>127.0.0.1:&lt;port&gt;</code>.",
        widget=forms.NumberInput(attrs={"placeholder": "8443"}),
    )
    proxy_protocol = forms.BooleanField(
        required=False,
        label="PROXY protocol v2",
        help_text="The edge prepends the visitor's real address; your service must expect it.",
    )
    allow = forms.CharField(
        required=False, max_length=4096, label="Allowed networks", help_text=networks.FORM_HELP
    )


class AllowForm(forms.Form):
    allow = forms.CharField(required=False, max_length=4096)
