"""`cloudathome demo`: both sites on this machine, a sample home HTTPS service, a local DNS
server and a local ACME server (Pebble), through the whole walkthrough of the original
README: the home owns its name under the cloud's base domain, proves a custom domain with a
DNS TXT record, gets its certificate and serves a page, verified with a real TLS client,
then a summary of where everything runs. Needs root (the cloud's sshd gives each home its
own system user)."""

from __future__ import annotations

import argparse
import contextlib
import pwd
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import requests

from workers.local.pebble import MockDns, PebbleInfo, mock_dns, pebble_server
from workers.local.procs import wait_for
from workers.local.sites import (
    CloudSite,
    HomeSite,
    register_home,
    run_state,
    start_cloud,
    start_home,
)

T = TypeVar("T")
USER, PASSWORD, EMAIL = "alice", "Alice-demo-2026", "alice@example.com"
HOSTNAME = "shop.demo.test"  # a custom domain, proven with a TXT record
BASE_DOMAIN = "homes.demo.test"  # the operator's: one wildcard DNS record in real life
PREFIX = "demo"  # the demo's SSH identities: demo00_alice
PAGE = b"<h1>Hello from a service running at home</h1>\n"
STATE_BASE = Path("/var/lib/cloudathome-demo")


class DemoFailed(Exception):
    pass


class Steps:
    """Numbered steps with their duration; a failed step stops the walkthrough."""

    def __init__(self) -> None:
        self.done: list[tuple[str, float]] = []

    def run(self, title: str, action: Callable[[], T]) -> T:
        print(f"[{len(self.done) + 1:2}] {title} ...", flush=True)
        started = time.monotonic()
        try:
            result = action()
        except Exception as exc:
            print(f"     FAILED after {time.monotonic() - started:.1f} s: {exc}", flush=True)
            raise DemoFailed(title) from exc
        took = time.monotonic() - started
        self.done.append((title, took))
        print(f"     ok ({took:.1f} s)", flush=True)
        return result


@contextlib.contextmanager
def sample_service(cert_dir: Path) -> Iterator[int]:
    """The user's own HTTPS service at home, serving the certificate the console obtained."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_dir / "fullchain.pem", cert_dir / "privkey.pem")

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> tuple[socket.socket, Any]:
            sock, address = super().get_request()
            return tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    server = Server(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def signup(cloud: CloudSite) -> None:
    """The web form a person fills in at /signup/."""
    web = requests.Session()
    url = f"{cloud.url}/signup/"
    web.get(url, timeout=10)
    data = {"username": USER, "email": EMAIL, "password1": PASSWORD, "password2": PASSWORD}
    data["csrfmiddlewaretoken"] = web.cookies.get("cah_cloud_csrftoken") or ""
    r = web.post(url, data=data, headers={"Referer": url}, timeout=10)
    if "waiting for approval" not in r.text:
        raise RuntimeError(f"signup was not accepted (HTTP {r.status_code})")


def approve(cloud: CloudSite) -> None:
    done = cloud.manage("approve", USER)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())


def base_domain(cloud: CloudSite) -> str:
    api = cloud.api(cloud.token(USER, PASSWORD))
    homes = api.get(f"{cloud.url}/api/homes", timeout=10).json()
    name = homes[0]["base_domain"] if homes else None
    if not name:
        raise RuntimeError("the home has no name under the base domain")
    return str(name)


def issue_certificate(
    home: HomeSite,
    api: requests.Session,
    cert_root: Path,
    dns: MockDns | None = None,
    name: str = HOSTNAME,
) -> dict[str, Any]:
    """Add the domain on the console; when it waits for its proof, create the TXT record it
    shows in `dns` (what the user does at their DNS provider) and ask for a check. A name
    under the home's base domain needs no `dns`."""
    body = {"name": name, "email": EMAIL, "cert_dir": str(cert_root)}
    r = api.post(f"{home.url}/api/domains", json=body, timeout=10)
    r.raise_for_status()
    domain_id = r.json()["id"]
    seen: list[str] = []

    def finished() -> dict[str, Any] | None:
        domain = api.get(f"{home.url}/api/domains/{domain_id}", timeout=10).json()
        step = domain["job"]["step"]
        if step and step not in seen:
            seen.append(step)
            print(f"       · {step}", flush=True)
            record = domain["ownership"]["record"]
            if domain["job"]["state"] == "waiting" and record and dns is not None:
                print(f"       · creating {record['name']} TXT {record['value']}", flush=True)
                dns.add_txt(record["name"], record["value"])
                api.post(
                    f"{home.url}/api/domains/{domain_id}/verify", timeout=10
                ).raise_for_status()
        return domain if domain["job"]["state"] in ("done", "failed") else None

    domain = wait_for(finished, timeout=180, interval=0.2, what="the certificate")
    if domain["job"]["state"] != "done":
        raise RuntimeError(domain["job"]["error"])
    return dict(domain)


def open_tunnel(
    home: HomeSite, api: requests.Session, domain_id: int, port: int, name: str = HOSTNAME
) -> dict[str, Any]:
    body = {"hostname": name, "home_port": port}
    r = api.post(f"{home.url}/api/domains/{domain_id}/proxy-entries", json=body, timeout=30)
    r.raise_for_status()
    entry_id = r.json()["id"]
    api.post(
        f"{home.url}/api/proxy-entries/{entry_id}/tunnel", json={"open": True}, timeout=10
    ).raise_for_status()

    def is_open() -> dict[str, Any] | None:
        entry = api.get(f"{home.url}/api/proxy-entries/{entry_id}", timeout=10).json()
        if entry["tunnel"]["state"] == "failed":
            raise RuntimeError(entry["tunnel"]["last_error"])
        return dict(entry) if entry["tunnel"]["state"] == "open" else None

    return wait_for(is_open, timeout=60, interval=0.2, what="the tunnel")


def verify(cloud: CloudSite, pebble: PebbleInfo, roots: Path, name: str = HOSTNAME) -> str:
    """A real TLS client, as a browser would connect: SNI, chain checked against Pebble's root."""
    roots.write_text("".join(pebble.roots()))
    context = ssl.create_default_context(cafile=str(roots))

    def fetch() -> tuple[bytes, dict[str, Any]]:
        with (
            socket.create_connection(("127.0.0.1", cloud.https_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            cert = tls.getpeercert() or {}  # gone once the server closes
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return data, cert

    body, cert = wait_for(fetch, timeout=20, what="the page through the edge")
    if PAGE not in body:
        raise RuntimeError("the edge answered, but not with the sample page")
    issuer = dict(x[0] for x in cert.get("issuer", ()))
    return f"{name} served through the edge, certificate issued by {issuer.get('commonName', '?')}"


def walkthrough(root: Path, keep_running: bool) -> int:
    steps = Steps()
    with contextlib.ExitStack() as stack:

        def started(context: contextlib.AbstractContextManager[T]) -> Callable[[], T]:
            return lambda: stack.enter_context(context)

        dns = steps.run(
            "start a local DNS server (pebble-challtestsrv) for the cloud and the CA",
            started(mock_dns(root / "dns")),
        )
        cloud_settings = {
            "CLOUDATHOME_SSH_USER_PREFIX": PREFIX,
            "CLOUDATHOME_BASE_DOMAIN": BASE_DOMAIN,
            "CLOUDATHOME_DNS_RESOLVERS": dns.resolver,
        }
        cloud = steps.run(
            f"start the cloud site with the base domain {BASE_DOMAIN} "
            "(HAProxy, sshd, web, worker, beat, Flower, Redis)",
            started(start_cloud(root / "cloud", cloud_settings)),
        )
        steps.run(f"sign up {USER} at /signup/ (inactive until approved)", lambda: signup(cloud))
        steps.run(f"approve {USER} (as an administrator)", lambda: approve(cloud))
        config, registered = steps.run(
            "generate the home's SSH key pair and register the home",
            lambda: register_home(cloud, root / "home", USER, PASSWORD),
        )
        if registered.returncode != 0:
            print(registered.stderr, file=sys.stderr)
            raise DemoFailed("register")
        print(
            "\n".join(f"       {line}" for line in registered.stdout.splitlines()[-5:]), flush=True
        )
        stack.callback(release_home, cloud)
        print(f"         its names    : {base_domain(cloud)} and every name below it", flush=True)
        pebble = steps.run(
            "start a local ACME server (Pebble) validating through the edge",
            started(pebble_server(root / "pebble", cloud.http_port, cloud.https_port, dns=dns)),
        )
        console_password = PASSWORD
        acme = {
            "CLOUDATHOME_ACME_DIRECTORY": pebble.directory_url,
            "CLOUDATHOME_ACME_CA_BUNDLE": pebble.ca_bundle,
        }
        home = steps.run(
            "start the Home Console (web, worker, beat, Flower, Redis)",
            started(start_home(root / "home", config, console_password, acme)),
        )
        api = home.api()
        domain = steps.run(
            f"add the custom domain {HOSTNAME}, prove it with its TXT record, "
            "issue its certificate through the tunnel",
            lambda: issue_certificate(home, api, home.cert_root, dns),
        )
        port = steps.run(
            "start the sample HTTPS service at home with that certificate",
            started(sample_service(Path(domain["cert_path"]))),
        )
        entry = steps.run(
            "add the HTTPS proxy entry and open its tunnel",
            lambda: open_tunnel(home, api, domain["id"], port),
        )
        stack.callback(close_tunnel, home, api, entry["id"])
        result = steps.run(
            "verify with a real TLS client through the cloud edge",
            lambda: verify(cloud, pebble, root / "roots.pem"),
        )
        total = sum(took for _, took in steps.done)
        print(f"\nAll {len(steps.done)} steps passed in {total:.1f} s: {result}.\n")
        _summary(root, cloud, home, console_password)
        if keep_running:
            print("\nRunning; Ctrl-C stops everything.", flush=True)
            stopped = threading.Event()
            signal.signal(signal.SIGINT, lambda *_: stopped.set())
            signal.signal(signal.SIGTERM, lambda *_: stopped.set())
            stopped.wait()
        print("stopping ...", flush=True)
    return 0


def _summary(root: Path, cloud: CloudSite, home: HomeSite, console_password: str) -> None:
    site = f"https://{HOSTNAME}:{cloud.https_port}/"
    curl = f"curl --cacert {root / 'roots.pem'} --resolve {HOSTNAME}:{cloud.https_port}:127.0.0.1"
    flower = (
        f"cloud http://127.0.0.1:{cloud.flower_port}/  home http://127.0.0.1:{home.flower_port}/"
    )
    lines = [
        ("cloud UI", f"{cloud.url}/   (admin / {cloud.admin_password}; {USER} / {PASSWORD})"),
        ("cloud API docs", f"{cloud.url}/api/schema/swagger/"),
        ("Home Console", f"{home.url}/   (admin / {console_password})"),
        ("Flower", flower),
        ("the site", f"{curl} {site}"),
        ("state and logs", str(root)),
    ]
    for label, text in lines:
        print(f"  {label:<15} {text}")


def close_tunnel(home: HomeSite, api: requests.Session, entry_id: int) -> None:
    with contextlib.suppress(requests.RequestException):
        api.post(
            f"{home.url}/api/proxy-entries/{entry_id}/tunnel", json={"open": False}, timeout=10
        )
        url = f"{home.url}/api/proxy-entries/{entry_id}"
        wait_for(lambda: api.get(url, timeout=10).json()["tunnel"]["state"] == "closed", timeout=20)


def release_home(cloud: CloudSite) -> None:
    """Leave no system user behind: release the demo's home through the API."""
    with contextlib.suppress(requests.RequestException, TimeoutError):
        api = cloud.api(cloud.token(USER, PASSWORD))
        for home in api.get(f"{cloud.url}/api/homes", timeout=10).json():
            api.delete(f"{cloud.url}/api/homes/{home['slug']}", timeout=10)
        # The key goes first, the system user last (a release removes every trace).
        wait_for(lambda: not any(u.pw_name.startswith(PREFIX) for u in pwd.getpwall()), timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudathome demo", description=__doc__)
    parser.add_argument(
        "--exit",
        action="store_true",
        help="stop after verifying (exit 0 only if every step passed)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        help=f"where both sites keep their state (default: a new folder under {STATE_BASE})",
    )
    args = parser.parse_args(argv)
    root = run_state("cloudathome demo", args.state, STATE_BASE)
    if root is None:
        return 2
    # SIGTERM unwinds like Ctrl-C: every site started so far is stopped on the way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    print(f"cloudathome demo: state in {root}\n", flush=True)
    try:
        return walkthrough(root, keep_running=not args.exit)
    except DemoFailed as exc:
        print(f"\ncloudathome demo: the step '{exc}' failed; logs are in {root}", file=sys.stderr)
        return 1
