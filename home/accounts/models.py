"""API tokens of the Home Console's local users (see workers.common.tokens)."""

from workers.common.tokens import AbstractApiToken


class ApiToken(AbstractApiToken):
    token_prefix = "cahh_"  # noqa: S105 - a public marker, not a secret

    class Meta(AbstractApiToken.Meta):
        pass
