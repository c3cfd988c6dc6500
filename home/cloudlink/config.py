"""cloudlink.yaml: the home's link to its cloud (written by `cloudathome register`, read by
every process of the Home Console). A missing or malformed file stops start-up with one
line naming the file and the field."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from workers.common.files import write_atomic

_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


class ConfigError(Exception):
    """One line: '<file>: <field>: <reason>'."""


@dataclass(frozen=True)
class SshLink:
    host: str
    port: int
    username: str
    private_key_path: str
    known_hosts: str


@dataclass(frozen=True)
class Ports:
    base: int
    count: int

    @property
    def range(self) -> range:
        return range(self.base, self.base + self.count)


@dataclass(frozen=True)
class CloudLink:
    cloudserver_url: str
    auth_token: str
    home_slug: str
    ssh: SshLink
    ports: Ports

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _need(data: dict[str, Any], key: str, kind: type, path: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise ConfigError(f"{path}: missing")
    value = data[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{path}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def parse(data: Any) -> CloudLink:
    """Validate a loaded document; ConfigError names the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError("top level: expected a mapping of fields")
    url = _need(data, "cloudserver_url", str, "cloudserver_url")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ConfigError("cloudserver_url: expected an http(s) URL")
    ssh = _need(data, "ssh", dict, "ssh")
    ports = _need(data, "ports", dict, "ports")
    link = CloudLink(
        cloudserver_url=url.rstrip("/"),
        auth_token=_need(data, "auth_token", str, "auth_token"),
        home_slug=_need(data, "home_slug", str, "home_slug"),
        ssh=SshLink(
            host=_need(ssh, "host", str, "ssh.host"),
            port=_need(ssh, "port", int, "ssh.port"),
            username=_need(ssh, "username", str, "ssh.username"),
            private_key_path=_need(ssh, "private_key_path", str, "ssh.private_key_path"),
            known_hosts=_need(ssh, "known_hosts", str, "ssh.known_hosts"),
        ),
        ports=Ports(
            base=_need(ports, "base", int, "ports.base"),
            count=_need(ports, "count", int, "ports.count"),
        ),
    )
    if not 1 <= link.ssh.port <= 65535:
        raise ConfigError("ssh.port: must be 1..65535")
    if not _USERNAME.match(link.ssh.username):
        raise ConfigError("ssh.username: not a valid user name")
    if not (
        link.ports.base >= 1024
        and link.ports.count >= 1
        and link.ports.base + link.ports.count <= 65536
    ):
        raise ConfigError("ports: base/count outside 1024..65535")
    return link


def load(path: Path) -> CloudLink:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: file not found (run `cloudathome register` or set CLOUDLINK_CONFIG)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    try:
        return parse(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def write(path: Path, link: CloudLink) -> None:
    """Atomically, 0600 from the first byte: the file holds the API token."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, yaml.safe_dump(link.to_dict(), sort_keys=False), 0o600)
