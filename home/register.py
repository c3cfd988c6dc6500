"""`cloudathome register` (and home/scripts/register_home.py): claim a home slot on the
cloud, wait for its SSH identity, pin the cloud sshd's host key and write cloudlink.yaml.
Any failure prints one line and leaves no file and no claimed slot behind."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import paramiko

from home.cloudlink import config
from home.cloudlink.client import CloudClient, CloudError
from home.keys import DEFAULT_KEY_PATH
from workers.common.files import write_atomic

DEFAULT_CONFIG = Path(__file__).resolve().parent / "config" / "cloudlink.yaml"


class RegisterError(Exception):
    pass


def config_path() -> Path:
    return Path(os.environ.get("CLOUDLINK_CONFIG") or DEFAULT_CONFIG).expanduser()


def fetch_host_key(host: str, port: int, expected: str, timeout: float = 10.0) -> str:
    """The sshd's ed25519 host key, read with paramiko and checked against the key the API
    announced (so neither channel alone can swap it)."""
    transport = paramiko.Transport((host, port))
    try:
        transport.get_security_options().key_types = (
            [expected.split()[0]] if expected else ["ssh-ed25519"]
        )
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError) as exc:
        raise RegisterError(f"cannot read the host key of {host}:{port}: {exc}") from None
    finally:
        transport.close()
    line = f"{key.get_name()} {key.get_base64()}"
    if expected and line != " ".join(expected.split()[:2]):
        raise RegisterError(
            f"the host key of {host}:{port} differs from the one the cloud API announced; refusing to pin it"
        )
    return line


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    from_env = os.environ.get("CLOUDATHOME_PASSWORD")
    if from_env:
        return from_env
    return getpass.getpass(f"Password for {args.username}: ")


def register(args: argparse.Namespace, out: object = sys.stdout) -> Path:
    def say(line: str) -> None:
        print(line, file=out, flush=True)  # type: ignore[call-overload]

    public_key = Path(args.public_key).expanduser()
    private_key = Path(args.private_key).expanduser().resolve()
    try:
        key_text = public_key.read_text().strip()
    except OSError as exc:
        raise RegisterError(f"--public-key: cannot read {public_key}: {exc.strerror}") from None
    if not private_key.is_file():
        raise RegisterError(f"--private-key: {private_key} does not exist")
    target = config_path()
    url = args.cloudserver_url.rstrip("/")
    if urlsplit(url).scheme not in ("http", "https"):
        raise RegisterError("--cloudserver-url: expected an http(s) URL")

    anonymous = CloudClient(url, timeout=args.timeout)
    say(f"[1/4] signing in to {url} as {args.username} ...")
    token = anonymous.token(args.username, _password(args))
    client = CloudClient(url, token, timeout=args.timeout)
    say("[2/4] claiming a home slot ...")
    home = client.claim_home(key_text)
    slug = home["slug"]
    known_hosts = target.parent / "known_hosts"
    written: list[Path] = []
    try:
        say(f"[3/4] provisioning the SSH identity of {home['ssh_username']} ")
        deadline = time.monotonic() + args.wait
        while home["status"] == "provisioning":
            if time.monotonic() > deadline:
                raise RegisterError(
                    f"provisioning did not finish in {args.wait:g} s (is the cloud's worker running?)"
                )
            time.sleep(0.3)
            home = client.home(slug)
        if home["status"] != "ready":
            raise RegisterError(
                f"provisioning failed: {home.get('status_detail') or home['status']}"
            )
        ssh_host = args.ssh_host or home["ssh_host"]
        say(f"[4/4] pinning the host key of {ssh_host}:{home['ssh_port']} ...")
        host_key = fetch_host_key(ssh_host, int(home["ssh_port"]), home["ssh_host_key"])
        host_pattern = (
            ssh_host if int(home["ssh_port"]) == 22 else f"[{ssh_host}]:{home['ssh_port']}"
        )
        known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(known_hosts, f"{host_pattern} {host_key}\n", 0o600)
        written.append(known_hosts)
        link = config.CloudLink(
            cloudserver_url=url,
            auth_token=token,
            home_slug=slug,
            ssh=config.SshLink(
                host=ssh_host,
                port=int(home["ssh_port"]),
                username=home["ssh_username"],
                private_key_path=str(private_key),
                known_hosts=str(known_hosts.resolve()),
            ),
            ports=config.Ports(base=int(home["port_base"]), count=int(home["port_count"])),
        )
        config.write(target, link)
    except BaseException:
        # Leave no file and no claimed slot behind: the user can simply run register again.
        for path in written:
            path.unlink(missing_ok=True)
        with contextlib.suppress(CloudError):
            client.release_home(slug)
        raise
    last = link.ports.base + link.ports.count - 1
    say(f"Done. Configuration written to: {target}")
    say(f"  home_slug    : {slug}")
    say(f"  ssh_username : {link.ssh.username}")
    say(f"  ssh_host     : {link.ssh.host}:{link.ssh.port}")
    say(f"  port range   : {link.ports.base} – {last}")  # noqa: RUF001 - the original summary
    return target


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cloudathome register",
        description="Register this home with a cloudathome cloud server.",
    )
    p.add_argument("--cloudserver-url", required=True, help="e.g. https://cloud.example.com")
    p.add_argument("--username", required=True)
    p.add_argument(
        "--password",
        help="visible in the process list: prefer the prompt, --password-stdin or CLOUDATHOME_PASSWORD",
    )
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--public-key", default=f"{DEFAULT_KEY_PATH}.pub")
    p.add_argument("--private-key", default=str(DEFAULT_KEY_PATH))
    p.add_argument("--ssh-host", help="override the SSH host the cloud announces")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for provisioning")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per API call")
    p.add_argument("--force", action="store_true", help="overwrite an existing cloudlink.yaml")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    target = config_path()
    if target.exists() and not args.force:
        print(f"error: {target} already exists (use --force to replace it)", file=sys.stderr)
        return 1
    try:
        register(args)
    except (RegisterError, CloudError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
