"""API tokens of cloud accounts (see workers.tokens)."""

from workers.tokens import AbstractApiToken


class ApiToken(AbstractApiToken):
    token_prefix = "cah_"  # noqa: S105 - a public marker, not a secret

    class Meta(AbstractApiToken.Meta):
        pass
