"""API authentication of the Home Console: its tokens, then the session (workers.tokens)."""

from home.accounts.models import ApiToken
from workers.tokens import api_auth as token_or_session

api_auth = token_or_session(ApiToken)
