"""API authentication of the Home Console: its tokens, then the session (workers.common.tokens)."""

from home.accounts.models import ApiToken
from workers.common.tokens import api_auth as token_or_session

api_auth = token_or_session(ApiToken)
