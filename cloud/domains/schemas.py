from __future__ import annotations

import datetime as dt
from typing import Literal

from ninja import Field, Schema


class DomainIn(Schema):
    name: str = Field(..., max_length=253, description="the domain, in IDNA (xn--) form")


class VerificationOut(Schema):
    type: Literal["TXT"] = "TXT"
    name: str = Field(..., description="where to create the record: _cloudathome.<domain>")
    value: str


class DomainOut(Schema):
    name: str
    status: Literal["unverified", "verified", "failed"]
    reason: str = Field(..., description="why the last check failed, in one sentence")
    verification: VerificationOut
    failures: int = Field(..., description="consecutive failed checks")
    checked: dt.datetime | None
    next_check: dt.datetime | None
    verified: dt.datetime | None
