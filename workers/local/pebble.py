"""A local ACME server (Debian's Pebble, with pebble-challtestsrv as its DNS) for the demo,
the benchmarks and the tests: certificates issued for real, without the internet. The same
DNS server answers the cloud's TXT lookups when homes prove their custom domains.

Pebble validates challenges against `http_port` / `tls_port` on 127.0.0.1 (every name resolves
there through challtestsrv), the same role the edge's :80 / :443 play in the product.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from workers.common import acme
from workers.common.files import write_atomic
from workers.local.procs import free_port, port_open, running


@dataclass(frozen=True)
class MockDns:
    """pebble-challtestsrv as a DNS server: every A query answers `resolve_to` unless told
    otherwise, and TXT records are set and cleared over its management API."""

    management_url: str
    port: int

    @property
    def resolver(self) -> str:
        """The server as CLOUDATHOME_DNS_RESOLVERS spells it."""
        return f"127.0.0.1:{self.port}"

    def _post(self, endpoint: str, body: dict[str, object]) -> None:
        reply = requests.post(f"{self.management_url}/{endpoint}", json=body, timeout=10)
        reply.raise_for_status()

    def add_a(self, host: str, addresses: list[str]) -> None:
        """Answer A queries for `host` with `addresses` instead of the default."""
        self._post("add-a", {"host": host, "addresses": addresses})

    def clear_a(self, host: str) -> None:
        self._post("clear-a", {"host": host})

    def set_servfail(self, host: str) -> None:
        """Make every query for `host` fail with SERVFAIL (a broken or missing DNS zone)."""
        self._post("set-servfail", {"host": host})

    def clear_servfail(self, host: str) -> None:
        self._post("clear-servfail", {"host": host})

    def add_txt(self, host: str, value: str) -> None:
        """One more TXT value at `host` (the values already there stay)."""
        self._post("set-txt", {"host": f"{host.rstrip('.')}.", "value": value})

    def clear_txt(self, host: str) -> None:
        """Every TXT value at `host` gone: queries get an empty answer."""
        self._post("clear-txt", {"host": f"{host.rstrip('.')}."})


@dataclass(frozen=True)
class PebbleInfo:
    directory_url: str
    ca_bundle: str  # the CA of Pebble's own HTTPS listeners, not of the certificates it issues
    management_url: str  # Pebble's management interface (roots, cert status)
    dns: MockDns  # the DNS Pebble resolves every name with
    http_port: int  # where Pebble connects for HTTP-01
    tls_port: int  # where Pebble connects for TLS-ALPN-01

    def roots(self) -> list[str]:
        """PEM of every root Pebble issues under (regenerated at each Pebble start)."""
        found: list[str] = []
        while True:
            reply = requests.get(
                f"{self.management_url}/roots/{len(found)}", verify=self.ca_bundle, timeout=10
            )
            if reply.status_code != 200 or "BEGIN CERTIFICATE" not in reply.text:
                break
            found.append(reply.text)
        if not found:
            raise RuntimeError(f"pebble returned no root at {self.management_url}/roots/0")
        return found

    def intermediates(self) -> list[str]:
        """PEM of Pebble's intermediate(s) for the roots above."""
        reply = requests.get(
            f"{self.management_url}/intermediates/0", verify=self.ca_bundle, timeout=10
        )
        reply.raise_for_status()
        return [reply.text]


def _write_tls_identity(tmp: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudathome test pebble CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "pebble-ca.pem", tmp / "cert.pem", tmp / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_atomic(key_path, acme.private_pem(key), 0o600)
    return ca_path, cert_path, key_path


@contextmanager
def mock_dns(tmp: Path, resolve_to: str = "127.0.0.1") -> Iterator[MockDns]:
    """Run challtestsrv (DNS only) until the block exits; stopped by PID."""
    tmp.mkdir(parents=True, exist_ok=True)
    dns_port, management_port = free_port(), free_port()
    listeners = {"-dns01": f"127.0.0.1:{dns_port}", "-management": f"127.0.0.1:{management_port}"}
    disabled = {"-defaultIPv6": "", "-http01": "", "-https01": "", "-tlsalpn01": ""}
    options = {**listeners, "-defaultIPv4": resolve_to, **disabled}
    argv = ["pebble-challtestsrv", *(part for pair in options.items() for part in pair)]
    with running(
        argv,
        log=tmp / "challtestsrv.log",
        ready=lambda: port_open(management_port) and port_open(dns_port),
    ):
        yield MockDns(f"http://127.0.0.1:{management_port}", dns_port)


@contextmanager
def pebble_server(
    tmp: Path,
    http_port: int,
    tls_port: int,
    resolve_to: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    dns: MockDns | None = None,
) -> Iterator[PebbleInfo]:
    """Run Pebble (and challtestsrv as its DNS, unless `dns` is one already running) until
    the block exits; both are stopped by PID.

    `env` adds Pebble settings, e.g. {"PEBBLE_AUTHZREUSE": "100"}; by default Pebble never reuses
    an authorization, so every order really exercises a challenge.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if dns is None:
            dns = stack.enter_context(mock_dns(tmp, resolve_to))
        yield stack.enter_context(_pebble(tmp, http_port, tls_port, dns, env))


@contextmanager
def _pebble(
    tmp: Path, http_port: int, tls_port: int, dns: MockDns, env: dict[str, str] | None
) -> Iterator[PebbleInfo]:
    ca_path, cert_path, key_path = _write_tls_identity(tmp)
    acme_port, management_port = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(cert_path),
            "privateKey": str(key_path),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    config_path = tmp / "pebble-config.json"
    config_path.write_text(json.dumps(config, indent=2))
    pebble_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
        **(env or {}),
    }
    info = PebbleInfo(
        directory_url=f"https://127.0.0.1:{acme_port}/dir",
        ca_bundle=str(ca_path),
        management_url=f"https://127.0.0.1:{management_port}",
        dns=dns,
        http_port=http_port,
        tls_port=tls_port,
    )

    def directory_served() -> bool:
        return requests.get(info.directory_url, verify=info.ca_bundle, timeout=2).ok

    with running(
        ["pebble", "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns.port}"],
        log=tmp / "pebble.log",
        env=pebble_env,
        ready=directory_served,
    ):
        yield info
