"""Post-renewal actions: only the operator's named argument vectors run, picked by name;
a request naming a program is refused with nothing stored, a bad configuration stops the
console naming the variable, and an action runs without a shell, as an unprivileged user
(never root), with a time limit and a bounded output tail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from home.certs import actions, services
from home.certs.models import Domain
from tests.home.conftest import Api
from tests.home.factories import domain, domain_body
from tests.support.unprivileged import User, system_user
from workers.common.conf import ConfigError

REPO = Path(__file__).resolve().parents[3]
ACTIONS = {"reload-nginx": ("/usr/sbin/nginx", "-s", "reload"), "mark": ("/usr/bin/true",)}


@pytest.fixture
def configured(settings: Any) -> dict[str, tuple[str, ...]]:
    settings.POST_RENEW_ACTIONS = ACTIONS
    return ACTIONS


# --- the configuration ---------------------------------------------------------------------


def test_actions_are_read_from_json_or_yaml() -> None:
    as_json = actions.parse_actions(
        json.dumps({"reload-nginx": ["/usr/sbin/nginx", "-s", "reload"]})
    )
    as_yaml = actions.parse_actions("reload-nginx: [/usr/sbin/nginx, -s, reload]\n")
    assert as_json == as_yaml == {"reload-nginx": ("/usr/sbin/nginx", "-s", "reload")}
    assert actions.parse_actions("") == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('["/bin/true"]', "must be a mapping"),
        ('{"Bad Name": ["/bin/true"]}', "action name 'Bad Name'"),
        ('{"rel": ["true"]}', "rel: the program must be an absolute path"),
        ('{"empty": []}', "empty: must be a list"),
        ('{"shell": "/bin/sh -c id"}', "shell: must be a list"),
        ('{"num": ["/bin/echo", 1]}', "num: must be a list"),
        ("{unclosed", "not JSON or YAML"),
    ],
)
def test_a_bad_configuration_is_refused_naming_the_variable(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        actions.parse_actions(text)
    assert str(raised.value).startswith(f"{actions.VARIABLE}: ")
    assert reason in str(raised.value)


def test_the_console_refuses_to_start_on_a_bad_action_list_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDATHOME_", "DJANGO_"))}
    done = subprocess.run(
        [sys.executable, "-m", "workers.common.cli", "home", "manage", "check"],
        env={
            **env,
            "CLOUDATHOME_STATE_DIR": str(tmp_path / "state"),
            actions.VARIABLE: '{"x": ["sh", "-c", "id"]}',
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"cloudathome: {actions.VARIABLE}: x: the program must be an absolute path"
    )


# --- requests never name a program ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("command", [["/bin/sh", "-c", "id > f"], "/bin/sh -c id", [], None])
def test_a_request_naming_a_program_is_refused_naming_the_field_and_nothing_is_stored(
    api: Api, configured: Any, command: Any
) -> None:
    response = api.post("/api/domains", domain_body(post_renew_command=command))
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["field"] == "post_renew_command"
    assert "never runs a program named by a request" in body["detail"]
    assert not Domain.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["argv", "command", "post_renew_argv"])
def test_any_other_field_a_request_adds_is_refused_naming_it(
    api: Api, configured: Any, field: str
) -> None:
    response = api.post("/api/domains", domain_body(**{field: ["/bin/sh", "-c", "id"]}))
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field
    assert not Domain.objects.exists()


@pytest.mark.django_db
def test_an_action_is_picked_by_name_and_shown_by_the_api(api: Api, configured: Any) -> None:
    response = api.post("/api/domains", domain_body(post_renew_action="reload-nginx"))
    assert response.status_code == 201, response.content
    assert response.json()["post_renew_action"] == "reload-nginx"
    assert response.json()["action"] is None
    assert Domain.objects.get().post_renew_action == "reload-nginx"


@pytest.mark.django_db
def test_the_schema_offers_a_name_not_a_program(client: Client) -> None:
    schema = client.get("/api/schema/").json()["components"]["schemas"]["DomainIn"]
    assert "post_renew_action" in schema["properties"]
    assert "post_renew_command" not in schema["properties"]
    assert schema["additionalProperties"] is False


@pytest.mark.django_db
def test_the_form_offers_only_the_operators_actions(
    client: Client, user: Any, configured: Any
) -> None:
    client.force_login(user)
    page = client.get("/domains/add/").content.decode()
    assert '<option value="reload-nginx">reload-nginx</option>' in page
    response = client.post("/domains/add/", domain_body(post_renew_action="/bin/sh"))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Domain.objects.exists()


# --- running ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_as_root_an_action_is_refused_recorded_and_nothing_runs(
    settings: Any, tmp_path: Path
) -> None:
    assert os.geteuid() == 0, "this suite runs as root (make test)"
    marker = tmp_path / "ran"
    settings.POST_RENEW_ACTIONS = {"touch": ("/usr/bin/touch", str(marker))}
    added = domain(post_renew_action="touch")
    assert services.post_renew_run(added.pk) is None
    added.refresh_from_db()
    assert added.action_exit is None and added.action_ran is not None
    assert added.action_output.startswith("refused: the console runs as root")
    assert not marker.exists()


@pytest.mark.django_db
def test_an_action_removed_from_the_configuration_no_longer_runs(
    settings: Any, tmp_path: Path
) -> None:
    settings.POST_RENEW_ACTIONS = {}
    added = domain(post_renew_action="gone")
    services.post_renew_run(added.pk)
    added.refresh_from_db()
    assert added.action_output == f"not run: 'gone' is no longer in {actions.VARIABLE}"


@pytest.fixture(scope="module")
def console_user() -> Iterator[User]:
    with system_user() as user:
        yield user


def _run_as(user: User, argv: list[str], timeout: float = 5) -> tuple[int | None, str]:
    """actions.run in a process of an ordinary user, as the console would run it."""
    code = (
        "import json, sys; from home.certs import actions;"
        f"print(json.dumps(actions.run(tuple({argv!r}), {timeout!r}, "
        "actions.environment('nas.example.com', '/srv/certs/nas.example.com'))))"
    )
    done = subprocess.run(
        [user.python, "-c", code],
        **user.popen_args(),  # type: ignore[arg-type]
        env={"PATH": "/usr/bin:/bin", "CLOUDATHOME_SECRET_KEY": "do-not-leak"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    exit_code, output = json.loads(done.stdout)
    return exit_code, output


def test_an_action_runs_as_the_consoles_own_user_without_a_shell(console_user: User) -> None:
    code, output = _run_as(console_user, ["/usr/bin/id", "-u"])
    assert (code, output.strip()) == (0, str(console_user.uid))
    code, output = _run_as(console_user, ["/bin/echo", "$(id)", ";", "id"])
    assert (code, output) == (0, "$(id) ; id\n")


def test_an_action_sees_which_certificate_changed_and_none_of_the_consoles_secrets(
    console_user: User,
) -> None:
    code, output = _run_as(console_user, ["/usr/bin/env"])
    assert code == 0
    assert "CLOUDATHOME_DOMAIN=nas.example.com" in output.splitlines()
    assert "CLOUDATHOME_CERT_PATH=/srv/certs/nas.example.com" in output.splitlines()
    assert "do-not-leak" not in output


def test_an_action_is_stopped_at_its_time_limit_with_its_children(console_user: User) -> None:
    code, output = _run_as(console_user, ["/bin/sh", "-c", "echo started; sleep 30 & sleep 30"], 1)
    assert code is None
    assert output.startswith("started\n") and "(time limit 1 s)" in output
    leftover = subprocess.run(
        ["pgrep", "-u", str(console_user.uid), "-f", "^sleep 30$"], capture_output=True, check=False
    )
    assert leftover.returncode == 1, leftover.stdout  # no sleep of it is left


def test_an_action_keeps_only_the_tail_of_a_long_output(console_user: User) -> None:
    code, output = _run_as(console_user, ["/usr/bin/seq", "1", "100000"])
    assert code == 0
    assert len(output) == actions.OUTPUT_LIMIT + 1 and output.endswith("99999\n100000\n")


def test_a_failing_or_missing_program_is_reported_not_raised(console_user: User) -> None:
    assert _run_as(console_user, ["/bin/false"]) == (1, "")
    code, output = _run_as(console_user, ["/nonexistent/reload"])
    assert code is None and output.startswith("could not start /nonexistent/reload")
