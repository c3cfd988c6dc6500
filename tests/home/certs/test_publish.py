"""The certificate tree: a domain's folder is the root or below it (no `..`, no symlink out
of it), and publishing swaps whole sets atomically while never replacing or deleting what the
console did not create: the path in the way is named and left as it was."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from home.certs import publish
from home.certs.models import Domain
from tests.home.conftest import Api
from tests.home.factories import domain_body

NAME = "files.home.test"


def cert_set(tag: str) -> dict[str, str]:
    return {f: f"-----{tag} {f}-----\n" for f in publish.FILES}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "certs"


def tree(path: Path) -> dict[str, str]:
    """Every entry below `path` with what it is (link target, file content, folder)."""
    found = {}
    for entry in sorted(path.rglob("*")):
        key = str(entry.relative_to(path))
        if entry.is_symlink():
            found[key] = f"-> {os.readlink(entry)}"
        elif entry.is_dir():
            found[key] = "dir"
        else:
            found[key] = entry.read_text()
    return found


# --- where ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cert_dir", "reason"),
    [
        ("/etc", "must be {root} or a folder below it"),
        ("{root}/../etc", "must not contain '.' or '..' components"),
        ("{root}/a/./b", "must not contain '.' or '..' components"),
        ("relative/certs", "must be an absolute path"),
        ("{root}-other", "must be {root} or a folder below it"),
        ("{root}/escape/inner", "leads outside {root} through a symbolic link"),
    ],
)
def test_a_folder_outside_the_root_is_refused_naming_the_field(
    root: Path, tmp_path: Path, cert_dir: str, reason: str
) -> None:
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(ValueError) as raised:
        publish.check_dir(cert_dir.format(root=root), root)
    assert str(raised.value).startswith("cert_dir: ")
    assert reason.format(root=root) in str(raised.value)


def test_the_root_and_folders_below_it_are_accepted_normalized(root: Path) -> None:
    assert publish.check_dir(str(root), root) == str(root)
    assert publish.check_dir(f"{root}//nginx/", root) == str(root / "nginx")


@pytest.mark.django_db
@pytest.mark.parametrize("cert_dir", ["/etc", "/etc/cloudathome/../../etc", "{root}/../x"])
def test_the_api_refuses_a_folder_outside_the_root_and_stores_nothing(
    api: Api, settings: Any, tmp_path: Path, cert_dir: str
) -> None:
    settings.CERT_ROOT = tmp_path / "certs"
    response = api.post("/api/domains", domain_body(cert_dir=cert_dir.format(root=tmp_path)))
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "cert_dir"
    assert not Domain.objects.exists()


@pytest.mark.django_db
def test_the_api_stores_the_normalized_folder(api: Api, settings: Any, tmp_path: Path) -> None:
    settings.CERT_ROOT = tmp_path / "certs"
    response = api.post("/api/domains", domain_body(cert_dir=f"{tmp_path}/certs//web/"))
    assert response.status_code == 201, response.content
    assert response.json()["cert_dir"] == f"{tmp_path}/certs/web"


# --- publishing ------------------------------------------------------------------------------


def test_publishing_writes_the_four_files_with_a_private_key(root: Path) -> None:
    live = publish.publish(root, root / "web", NAME, cert_set("one"))
    assert live == root / "web" / NAME and live.is_symlink()
    assert sorted(os.listdir(live)) == sorted(publish.FILES)
    assert (live / "privkey.pem").read_text() == "-----one privkey.pem-----\n"
    assert stat.S_IMODE((live / "privkey.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((live / "fullchain.pem").stat().st_mode) == 0o644


def test_a_new_set_replaces_the_old_one_and_removes_its_files(root: Path) -> None:
    publish.publish(root, root, NAME, cert_set("one"))
    live = publish.publish(root, root, NAME, cert_set("two"))
    assert (live / "fullchain.pem").read_text() == "-----two fullchain.pem-----\n"
    # Only the live link and the one version it points to remain: no old key left on disk.
    assert len(os.listdir(root)) == 2


def test_a_version_someone_added_a_file_to_is_no_longer_ours_and_is_kept(root: Path) -> None:
    live = publish.publish(root, root, NAME, cert_set("one"))
    (live / "notes.txt").write_text("mine")
    before = tree(root)
    with pytest.raises(publish.InTheWay, match="is in the way"):
        publish.publish(root, root, NAME, cert_set("two"))
    assert tree(root) == before


def test_a_folder_of_another_tool_named_like_the_domain_is_refused_and_kept(root: Path) -> None:
    # The attack: a domain named like an existing folder of the certificate directory.
    (root / NAME).mkdir(parents=True)
    (root / NAME / "privkey.pem").write_text("someone else's key")
    before = tree(root)
    with pytest.raises(publish.InTheWay) as raised:
        publish.publish(root, root, NAME, cert_set("one"))
    assert str(raised.value).startswith(f"{root / NAME}: is in the way")
    assert tree(root) == before  # nothing written, nothing deleted


@pytest.mark.parametrize("kind", ["file", "foreign link", "link to a foreign folder"])
def test_anything_else_where_the_link_goes_is_refused_and_kept(
    root: Path, tmp_path: Path, kind: str
) -> None:
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.pem").write_text("keep")
    if kind == "file":
        (root / NAME).write_text("a file")
    elif kind == "foreign link":
        (root / NAME).symlink_to(elsewhere)
    else:
        (root / f".{NAME}.abcdefgh").mkdir()
        (root / f".{NAME}.abcdefgh" / "other.txt").write_text("not ours")
        (root / NAME).symlink_to(f".{NAME}.abcdefgh")
    before = tree(root), tree(elsewhere)
    with pytest.raises(publish.InTheWay, match="is in the way"):
        publish.publish(root, root, NAME, cert_set("one"))
    assert (tree(root), tree(elsewhere)) == before


def test_a_symlink_on_the_way_below_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    root.mkdir()
    (tmp_path / "etc").mkdir()
    (root / "web").symlink_to(tmp_path / "etc")
    with pytest.raises(ValueError, match="through a symbolic link"):
        publish.publish(root, root / "web", NAME, cert_set("one"))
    assert os.listdir(tmp_path / "etc") == []


def test_a_symlink_planted_after_the_check_is_not_followed(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TOCTOU path: the folder passes the check, then becomes a link before the walk."""
    (tmp_path / "etc").mkdir()
    real_check = publish.check_dir

    def check_then_swap(cert_dir: str, root_: Path) -> str:
        checked = real_check(cert_dir, root_)
        (root / "web").symlink_to(tmp_path / "etc")
        return checked

    root.mkdir()
    monkeypatch.setattr(publish, "check_dir", check_then_swap)
    with pytest.raises(publish.InTheWay, match=f"^{root / 'web'}: is a symbolic link"):
        publish.publish(root, root / "web", NAME, cert_set("one"))
    assert os.listdir(tmp_path / "etc") == []


def test_a_domain_that_would_escape_the_folder_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match=r"^domain: "):
        publish.publish(root, root, "../../etc", cert_set("one"))
    assert not root.exists() or os.listdir(root) == []


def test_a_certificate_link_of_the_previous_release_is_still_replaced(root: Path) -> None:
    """Earlier versions named their folders like mkdtemp (8 characters); they are ours."""
    root.mkdir()
    old = root / f".{NAME}.k2j_9x0a"
    old.mkdir()
    for name in publish.FILES:
        (old / name).write_text("old")
    (root / NAME).symlink_to(old.name)
    live = publish.publish(root, root, NAME, cert_set("new"))
    assert (live / "cert.pem").read_text() == "-----new cert.pem-----\n"
    assert not old.exists()


def test_readers_never_see_a_partial_certificate_while_it_is_replaced(root: Path) -> None:
    sets = [cert_set("one"), cert_set("two")]
    live = publish.publish(root, root, NAME, sets[0])
    complete = {s["fullchain.pem"] for s in sets}
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append((live / "fullchain.pem").read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            publish.publish(root, root, NAME, sets[i % 2])
    finally:
        done.set()
        thread.join()
    assert seen
    assert set(seen) <= complete
