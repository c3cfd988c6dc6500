"""API tokens of cloud accounts (see workers.common.tokens)."""

from workers.common.tokens import AbstractApiToken


class ApiToken(AbstractApiToken):
    token_prefix = "cah_"  # noqa: S105 - a public marker, not a secret

    class Meta(AbstractApiToken.Meta):
        pass
