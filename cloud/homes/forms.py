from django import forms


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
        label="Hostname", max_length=253, help_text="Public hostname, e.g. mysite.example.com"
    )
    tunnel_port = forms.IntegerField(
        required=False, min_value=1, max_value=65535, help_text="Leave empty to pick a free port."
    )
    scheme = forms.ChoiceField(
        choices=[("https", "https (SNI, :443)"), ("http", "http (Host, :80)")]
    )
    proxy_protocol = forms.BooleanField(
        required=False,
        label="PROXY protocol v2",
        help_text="Your service sees the client's real IP.",
    )
