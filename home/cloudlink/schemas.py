"""Out schemas of `/api/status`: the stored link check, its age and each check's result."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from ninja import Field, Schema

from home.cloudlink.models import LinkCheck


class CheckOut(Schema):
    name: str
    ok: bool
    detail: str


class LinkStatusOut(Schema):
    state: Literal["unknown", "ok", "failed"] = Field(
        ..., description="`unknown` until the first check has finished."
    )
    reason: str = Field(..., description="The first failed check's detail.")
    checked_at: dt.datetime | None
    age_seconds: float | None = Field(..., description="How old the result is.")
    stale: bool = Field(..., description="No check for three periods: is the worker running?")
    queued: bool = Field(..., description="A check asked for now waits for a worker.")
    checks: list[CheckOut]


def link_status_out(row: LinkCheck) -> LinkStatusOut:
    age = row.age()
    return LinkStatusOut(
        state=row.state,  # type: ignore[arg-type]
        reason=row.reason,
        checked_at=row.checked_at,
        age_seconds=round(age.total_seconds(), 1) if age is not None else None,
        stale=row.stale,
        queued=row.queued,
        checks=[CheckOut(**c) for c in row.checks],
    )
