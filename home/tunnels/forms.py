"""The add-a-proxy-entry form; it only shapes input, the services validate it (and their
errors are shown next to the field they name)."""

from __future__ import annotations

from django import forms


class EntryForm(forms.Form):
    hostname = forms.CharField(
        max_length=253,
        help_text="The public hostname visitors use (TLS passes through to your service).",
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
