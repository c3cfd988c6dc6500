from django.http import HttpRequest
from ninja import Router

from cloud.accounts import services
from cloud.accounts.schemas import TokenIn, TokenOut
from workers.common.api import errors

router = Router(tags=["auth"])


@router.post("/token", response={200: TokenOut, **errors(403, 422, 429)}, auth=None)
def create_token(request: HttpRequest, body: TokenIn) -> TokenOut:
    """Exchange username + password for an API token (shown once; stored hashed)."""
    token = services.token_issue(request, body.username, body.password, body.name)
    return TokenOut(token=token, name=body.name)
