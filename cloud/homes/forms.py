from django import forms

from workers.common import networks


class RegisterHomeForm(forms.Form):
    public_key = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "ssh-ed25519 AAAA... you@home"}),
        max_length=16384,
        help_text="The public half of the key your home's tunnels will use (one line).",
    )
    label = forms.CharField(
        required=False,
        max_length=63,
        help_text="Your home's name under the cloud's base domain; empty: one from your user name.",
    )


class MappingForm(forms.Form):
    host = forms.CharField(
        label="Hostname",
        max_length=253,
        required=False,
        help_text="Public hostname, e.g. mysite.example.com (none for tcp).",
    )
    tunnel_port = forms.IntegerField(
        required=False, min_value=1, max_value=65535, help_text="Leave empty to pick a free port."
    )
    scheme = forms.ChoiceField(
        choices=[
            ("https", "https (SNI, :443)"),
            ("http", "http (Host, :80)"),
            ("tcp", "tcp (a public port of its own)"),
        ]
    )
    public_port = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=65535,
        label="Public port",
        help_text="tcp only; leave empty for the lowest free one.",
    )
    proxy_protocol = forms.BooleanField(
        required=False,
        label="PROXY protocol v2",
        help_text="Your service sees the client's real IP.",
    )
    allow = forms.CharField(
        required=False, max_length=4096, label="Allowed networks", help_text=networks.FORM_HELP
    )


class AllowForm(forms.Form):
    host = forms.CharField(max_length=253)
    scheme = forms.ChoiceField(choices=[("https", "https"), ("http", "http"), ("tcp", "tcp")])
    allow = forms.CharField(required=False, max_length=4096)
