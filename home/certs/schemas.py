"""In/Out schemas of the domains API, and the certificate job's step list that the API and
the domain page both show."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from ninja import Field, Path, Schema
from pydantic import ConfigDict, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from home.certs.models import Domain, JobState
from home.tunnels.schemas import EntryOut, entry_out

# A path id (domains, proxy entries), bounded so an absurd id is a 422 naming the parameter,
# not a database overflow.
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]

StepStatus = Literal["done", "current", "todo", "failed"]

# The ACME flow in the order it reports its steps (certs/services.py and workers/common/acme.py
# write job_step); a step the list does not know only shows as the raw `step` text.
FLOW: list[tuple[str, re.Pattern[str]]] = [
    ("Queued for a worker", re.compile(r"waiting for a worker")),
    ("Started", re.compile(r"starting")),
    ("Asked the cloud who owns the name", re.compile(r"asking the cloud who owns the name")),
    (
        "TXT record found (not needed under the base domain)",
        re.compile(r"waiting for the TXT record .*"),
    ),
    ("Name owned by this home", re.compile(r"name owned .*")),
    ("Order created at the CA", re.compile(r"order created|authorization still valid")),
    ("Tunnel port allocated", re.compile(r"port \d+ allocated")),
    ("Temporary mapping registered", re.compile(r"temporary \S+ mapping registered")),
    ("Temporary tunnel open", re.compile(r"tunnel open")),
    ("Challenge ready", re.compile(r"challenge ready")),
    ("Challenge answered, the CA validates", re.compile(r"challenge answered")),
    ("Temporary mapping and tunnel removed", re.compile(r"cleaning up")),
    ("Certificate issued", re.compile(r"certificate issued")),
]


class StepOut(Schema):
    name: str
    status: StepStatus


def job_steps(state: str, step: str) -> list[StepOut]:
    """Where the job is in FLOW: steps before the current one are done. A failed job keeps
    no position (its step is "failed"), so it shows one failed line; its error says why."""
    if state == JobState.IDLE:
        return []
    if state == JobState.FAILED:
        return [StepOut(name="Failed", status="failed")]
    if state == JobState.DONE:
        return [StepOut(name=name, status="done") for name, _ in FLOW]
    current = 0
    if state in (JobState.RUNNING, JobState.WAITING):
        current = next((i for i, (_, p) in enumerate(FLOW) if p.fullmatch(step)), 1)
    return [
        StepOut(name=name, status="done" if i < current else "current" if i == current else "todo")
        for i, (name, _) in enumerate(FLOW)
    ]


class DomainIn(Schema):
    name: str = Field(..., max_length=253, examples=["nas.example.com"])
    email: str = Field(..., max_length=254, examples=["me@example.com"])
    cert_dir: str = Field(
        ...,
        max_length=1024,
        description="The certificate root (CLOUDATHOME_CERT_ROOT) or a folder below it; the "
        "files land in <cert_dir>/<name>/.",
        examples=["/etc/cloudathome/certs"],
    )
    challenge: Literal["http-01", "tls-alpn-01"] = "http-01"
    post_renew_action: str = Field(
        "",
        max_length=40,
        description="The name of one of the operator's post-renewal actions "
        "(CLOUDATHOME_POST_RENEW_ACTIONS), run after each issuance; empty for none. "
        "A request cannot name a program.",
        examples=["reload-nginx"],
    )

    # A program named by a request (the old free-form field) is refused naming the field,
    # never silently dropped; any other unknown field is refused too.
    post_renew_command: SkipJsonSchema[Any] = None
    model_config = ConfigDict(extra="forbid")

    @field_validator("post_renew_command", mode="before")
    @classmethod
    def _no_program(cls, value: Any) -> None:
        raise PydanticCustomError(
            "program_refused",
            "refused: the console never runs a program named by a request; pick one of the "
            "operator's actions by name in post_renew_action",
        )


class ActionOut(Schema):
    """The last run of the post-renewal action (or why it did not run)."""

    ran: dt.datetime | None
    exit_code: int | None
    output: str


class JobOut(Schema):
    state: str
    step: str
    error: str
    updated: dt.datetime
    steps: list[StepOut]


class RecordOut(Schema):
    type: Literal["TXT"] = "TXT"
    name: str
    value: str


class OwnershipOut(Schema):
    status: str = Field(
        ...,
        description="what the cloud says: base (under the home's base domain), verified, "
        "unverified or failed (a custom domain waiting for its TXT record), refused, or '' "
        "before the first job",
    )
    reason: str
    record: RecordOut | None = Field(None, description="the DNS record that proves the name")


class DomainOut(Schema):
    id: int
    name: str
    email: str
    cert_dir: str
    challenge: str
    post_renew_action: str
    action: ActionOut | None
    cert_status: str
    cert_path: str
    cert_expiry: dt.datetime | None
    ownership: OwnershipOut
    job: JobOut
    entries: list[EntryOut]


def domain_out(domain: Domain) -> DomainOut:
    return DomainOut(
        id=domain.pk,
        name=domain.name,
        email=domain.email,
        cert_dir=domain.cert_dir,
        challenge=domain.challenge,
        post_renew_action=domain.post_renew_action,
        action=ActionOut(
            ran=domain.action_ran, exit_code=domain.action_exit, output=domain.action_output
        )
        if domain.action_ran or domain.action_output
        else None,
        cert_status=domain.cert_status,
        cert_path=domain.cert_path,
        cert_expiry=domain.cert_expiry,
        ownership=OwnershipOut(
            status=domain.ownership,
            reason=domain.ownership_reason,
            record=RecordOut(name=domain.proof_name, value=domain.proof_value)
            if domain.proof_name
            else None,
        ),
        job=JobOut(
            state=domain.job_state,
            step=domain.job_step,
            error=domain.job_error,
            updated=domain.job_updated,
            steps=job_steps(domain.job_state, domain.job_step),
        ),
        # .all() so the caller's prefetch (services.with_entries) is used.
        entries=[entry_out(e) for e in domain.entries.all()],
    )
