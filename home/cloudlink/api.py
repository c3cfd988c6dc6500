"""`/api/status`: the stored result of the link check, and a way to ask for one now. Reading
it never calls the cloud: the check runs in the worker (beat and "check now")."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from home.cloudlink import services
from home.cloudlink.models import LinkCheck
from home.cloudlink.schemas import LinkStatusOut, link_status_out
from workers.common.api import errors

router = Router(tags=["status"])


@router.get("", response={200: LinkStatusOut, **errors()})
def status(request: HttpRequest) -> LinkStatusOut:
    """The link to the cloud as last checked: API reachable, token valid, and an SSH
    preflight (the home's key may log in and listen on a free tunnel port)."""
    return link_status_out(LinkCheck.current())


@router.post("/check", response={202: LinkStatusOut, **errors()})
def check_now(request: HttpRequest) -> Status[LinkStatusOut]:
    """Queue a check now (nothing more while one waits); poll `GET /api/status` until
    `queued` is false."""
    return Status(202, link_status_out(services.link_check_queue()))
