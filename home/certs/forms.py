"""The add-a-domain form; it only shapes input, the services validate it (and their errors
are shown next to the field they name)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from home.certs.models import Challenge


class DomainForm(forms.Form):
    name = forms.CharField(
        max_length=253,
        label="Domain name",
        help_text="The public name to get a certificate for, e.g. <code>nas.example.com</code>. "
        "Its DNS must point at the cloud edge.",
        widget=forms.TextInput(attrs={"placeholder": "nas.example.com", "autofocus": True}),
    )
    email = forms.CharField(
        max_length=254,
        label="Contact email",
        help_text="Given to the certificate authority (expiry notices).",
        widget=forms.EmailInput(attrs={"placeholder": "you@example.com"}),
    )
    cert_dir = forms.CharField(
        max_length=1024,
        label="Certificate folder",
        help_text="The certificate root (<code>CLOUDATHOME_CERT_ROOT</code>) or a folder below "
        "it; the files land in <code>&lt;folder&gt;/&lt;domain&gt;/</code> (fullchain.pem, "
        "privkey.pem 0600).",
    )
    challenge = forms.ChoiceField(
        choices=[
            (Challenge.HTTP01.value, "HTTP-01 (validated through the edge's port 80)"),
            (Challenge.TLSALPN01.value, "TLS-ALPN-01 (validated through port 443 only)"),
        ],
        initial=Challenge.HTTP01.value,
    )
    post_renew_action = forms.ChoiceField(
        required=False,
        label="After each renewal, run",
        help_text="One of the actions the machine's operator configured "
        "(<code>CLOUDATHOME_POST_RENEW_ACTIONS</code>), run as the console's own user with a "
        "time limit; its output shows on the domain's page.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cert_dir"].initial = str(settings.CERT_ROOT)
        names = sorted(settings.POST_RENEW_ACTIONS)
        field = self.fields["post_renew_action"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "nothing")] + [(n, n) for n in names]
