"""POST /api/auth/token: exchange a console user's credentials for an API token."""

from django.http import HttpRequest
from ninja import Router

from home.accounts import services
from home.accounts.schemas import TokenIn, TokenOut
from workers.common.api import errors

router = Router(tags=["auth"])


@router.post("/token", response={200: TokenOut, **errors(403, 422, 429)}, auth=None)
def create_token(request: HttpRequest, body: TokenIn) -> TokenOut:
    """Exchange username + password for an API token (shown once; stored hashed). Send it
    as `Authorization: Bearer <token>`."""
    token = services.token_issue(request, body.username, body.password, body.name)
    return TokenOut(token=token, name=body.name)
