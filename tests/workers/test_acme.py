"""The ACME client and challenge responder against a real Pebble (and pebble-challtestsrv DNS).

Pebble validates on fixed ports of 127.0.0.1; `expose` forwards one of them to the responder,
standing in for the edge mapping + ssh tunnel the orchestrator opens in the product.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from workers.common.acme import (
    ACME_IDENTIFIER_OID,
    AcmeError,
    AcmeSettings,
    ChallengeType,
    IssuedCert,
    account_register,
    cert_not_after,
    challenge_certificate,
    issue,
)
from workers.common.acme_responder import ChallengeResponder
from workers.local.pebble import PebbleInfo, pebble_server
from workers.local.procs import free_port, port_open

EMAIL = "owner@example.org"


@contextlib.contextmanager
def forward(listen_port: int, target_port: int) -> Iterator[None]:
    """A TCP relay 127.0.0.1:listen_port -> 127.0.0.1:target_port while the block runs."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen()
    server.settimeout(0.05)
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", target_port))
            sockets.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        server.close()
        for s in sockets:
            s.close()


class Exposer:
    """The `expose` hook of the tests: records the responder port, optionally forwards to it."""

    def __init__(self, pebble_port: int | None) -> None:
        self.pebble_port = pebble_port
        self.ports: list[int] = []

    def __call__(self, responder: ChallengeResponder) -> AbstractContextManager[None]:
        port = responder.port
        self.ports.append(port)
        if self.pebble_port is None:
            return contextlib.nullcontext()
        return forward(self.pebble_port, port)


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleInfo]:
    with pebble_server(tmp_path_factory.mktemp("pebble"), free_port(), free_port()) as info:
        yield info


@pytest.fixture
def settings(pebble: PebbleInfo, tmp_path: Path) -> AcmeSettings:
    return AcmeSettings(pebble.directory_url, pebble.ca_bundle, tmp_path / "acme" / "account.pem")


def pebble_port(pebble: PebbleInfo, challenge: ChallengeType) -> int:
    return pebble.http_port if challenge == "http-01" else pebble.tls_port


def verified_chain(pebble: PebbleInfo, cert: IssuedCert, domain: str) -> list[x509.Certificate]:
    store = Store([x509.load_pem_x509_certificate(root.encode()) for root in pebble.roots()])
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(domain))
    leaf = x509.load_pem_x509_certificate(cert.cert_pem.encode())
    intermediates = x509.load_pem_x509_certificates(cert.chain_pem.encode())
    return verifier.verify(leaf, intermediates)


def issue_for(
    settings: AcmeSettings, pebble: PebbleInfo, domain: str, challenge: ChallengeType = "http-01"
) -> IssuedCert:
    expose = Exposer(pebble_port(pebble, challenge))
    return issue(settings, domain, EMAIL, challenge, expose)


# --- issuance --------------------------------------------------------------------------------


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_issued_chain_verifies_against_pebble_root_and_names_only_the_domain(
    pebble: PebbleInfo, settings: AcmeSettings, challenge: ChallengeType
) -> None:
    domain = f"{challenge}.issue.home.test"
    steps: list[str] = []
    expose = Exposer(pebble_port(pebble, challenge))

    cert = issue(settings, domain, EMAIL, challenge, expose, on_step=steps.append)

    chain = verified_chain(pebble, cert, domain)
    assert len(chain) >= 3  # leaf, intermediate, root
    leaf = chain[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [domain]
    key = serialization.load_pem_private_key(cert.key_pem.encode(), password=None)
    assert leaf.public_key() == key.public_key()
    assert cert.fullchain_pem == cert.cert_pem + cert.chain_pem
    assert cert.not_after == cert_not_after(cert.cert_pem) == leaf.not_valid_after_utc
    assert steps == ["order created", "challenge ready", "challenge answered", "certificate issued"]
    assert len(expose.ports) == 1
    assert not port_open(expose.ports[0]), "the responder must be stopped after issuance"


def test_account_key_is_private_and_reused_by_later_issuances(
    pebble: PebbleInfo, settings: AcmeSettings
) -> None:
    first = issue_for(settings, pebble, "account.home.test")
    key_bytes = settings.account_key_path.read_bytes()
    assert stat.S_IMODE(settings.account_key_path.stat().st_mode) == 0o600
    assert first.account_url.startswith(pebble.directory_url.rsplit("/", 1)[0])

    second = issue_for(settings, pebble, "account.home.test", "tls-alpn-01")

    assert settings.account_key_path.read_bytes() == key_bytes
    assert second.account_url == first.account_url
    assert account_register(settings, EMAIL) == first.account_url


def test_changing_the_email_keeps_the_same_account(settings: AcmeSettings) -> None:
    url = account_register(settings, EMAIL)
    assert account_register(settings, "someone-else@example.org") == url
    assert account_register(settings, "") == url


def test_a_new_account_key_means_a_new_account(pebble: PebbleInfo, tmp_path: Path) -> None:
    one = AcmeSettings(pebble.directory_url, pebble.ca_bundle, tmp_path / "one.pem")
    two = AcmeSettings(pebble.directory_url, pebble.ca_bundle, tmp_path / "two.pem")
    assert account_register(one, EMAIL) != account_register(two, EMAIL)


def test_a_recent_valid_authorization_is_reused_without_exposing_a_responder(
    tmp_path: Path,
) -> None:
    with pebble_server(
        tmp_path / "pebble", free_port(), free_port(), env={"PEBBLE_AUTHZREUSE": "100"}
    ) as reusing:
        settings = AcmeSettings(reusing.directory_url, reusing.ca_bundle, tmp_path / "key.pem")
        issue_for(settings, reusing, "reuse.home.test")
        steps: list[str] = []
        expose = Exposer(reusing.http_port)

        cert = issue(settings, "reuse.home.test", EMAIL, "http-01", expose, steps.append)

        verified_chain(reusing, cert, "reuse.home.test")
        assert steps == ["order created", "authorization still valid", "certificate issued"]
        assert expose.ports == []


# --- failures --------------------------------------------------------------------------------


def test_unresolvable_domain_gives_one_dns_sentence_and_stops_the_responder(
    pebble: PebbleInfo, settings: AcmeSettings
) -> None:
    domain = "nowhere.home.test"
    pebble.dns.set_servfail(domain)
    expose = Exposer(pebble.http_port)

    with pytest.raises(AcmeError) as raised:
        issue(settings, domain, EMAIL, "http-01", expose)

    message = str(raised.value)
    assert message.startswith(f"{domain}: the CA could not look the name up in DNS")
    assert "\n" not in message
    assert "acme-challenge" not in message  # the token URL is noise to a user
    assert len(expose.ports) == 1
    assert not port_open(expose.ports[0])


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_a_responder_nobody_exposed_gives_a_connection_error(
    pebble: PebbleInfo, settings: AcmeSettings, challenge: ChallengeType
) -> None:
    domain = f"{challenge}.unexposed.home.test"
    expose = Exposer(None)

    with pytest.raises(AcmeError) as raised:
        issue(settings, domain, EMAIL, challenge, expose)

    message = str(raised.value)
    assert message.startswith(f"{domain}: the CA could not connect to the challenge responder (")
    if challenge == "http-01":
        assert message.endswith("(connection refused)")
    assert "\n" not in message
    assert not port_open(expose.ports[0])


def test_a_wrong_answer_is_reported_as_such(pebble: PebbleInfo, settings: AcmeSettings) -> None:
    with ChallengeResponder("http-01") as stranger, pytest.raises(AcmeError) as raised:
        # The CA reaches a responder, but not the one that knows the token.
        issue(
            settings,
            "wrong.home.test",
            EMAIL,
            "http-01",
            lambda responder: forward(pebble.http_port, stranger.port),
        )
    assert str(raised.value).startswith(
        "wrong.home.test: the CA got a wrong answer from the challenge responder ("
    )
    assert "returned 404" in str(raised.value)


def test_an_expose_failure_propagates_unchanged_and_stops_the_responder(
    settings: AcmeSettings,
) -> None:
    ports: list[int] = []

    @contextlib.contextmanager
    def broken_tunnel(responder: ChallengeResponder) -> Iterator[None]:
        ports.append(responder.port)
        raise RuntimeError("tunnel did not open")
        yield

    with pytest.raises(RuntimeError, match="tunnel did not open"):
        issue(settings, "tunnel.home.test", EMAIL, "http-01", broken_tunnel)
    assert not port_open(ports[0])


def test_an_unreachable_acme_server_gives_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    settings = AcmeSettings(f"https://127.0.0.1:{port}/dir", None, tmp_path / "key.pem", 5)
    with pytest.raises(AcmeError) as raised:
        issue(settings, "a.home.test", EMAIL, "http-01", Exposer(None))
    assert str(raised.value) == (
        f"a.home.test: could not reach the ACME server 127.0.0.1:{port} (connection refused)"
    )


def test_an_acme_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog), never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        settings = AcmeSettings(f"https://127.0.0.1:{port}/dir", None, tmp_path / "key.pem", 1)
        with pytest.raises(AcmeError) as raised:
            account_register(settings, EMAIL)
    assert str(raised.value) == (
        f"ACME account: the ACME server 127.0.0.1:{port} did not answer within 1 s"
    )


def test_an_acme_server_outside_the_ca_bundle_is_refused(
    pebble: PebbleInfo, tmp_path: Path
) -> None:
    settings = AcmeSettings(pebble.directory_url, None, tmp_path / "key.pem")
    with pytest.raises(AcmeError, match="does not trust") as raised:
        account_register(settings, EMAIL)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("domain", "email", "challenge", "field"),
    [
        ("../etc.home.test", EMAIL, "http-01", "domain"),
        ("*.home.test", EMAIL, "http-01", "domain"),
        ("localhost", EMAIL, "http-01", "domain"),
        ("a_b.home.test", EMAIL, "http-01", "domain"),
        ("a.home.test", "not an email", "http-01", "email"),
        ("a.home.test", EMAIL, "dns-01", "challenge"),
    ],
)
def test_invalid_arguments_are_refused_before_any_request(
    tmp_path: Path, domain: str, email: str, challenge: str, field: str
) -> None:
    # An unreachable server proves that validation happens before any network call.
    settings = AcmeSettings(f"https://127.0.0.1:{free_port()}/dir", None, tmp_path / "key.pem")
    with pytest.raises(ValueError, match=rf"^{field}: "):
        issue(settings, domain, email, challenge, Exposer(None))  # type: ignore[arg-type]  # on purpose
    assert not settings.account_key_path.exists()


def test_settings_refuse_a_plain_http_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^directory_url: "):
        AcmeSettings("http://127.0.0.1:14000/dir", None, tmp_path / "key.pem")


# --- files -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_certs(pebble: PebbleInfo, tmp_path_factory: pytest.TempPathFactory) -> list[IssuedCert]:
    key = tmp_path_factory.mktemp("acct") / "account.pem"
    settings = AcmeSettings(pebble.directory_url, pebble.ca_bundle, key)
    return [issue_for(settings, pebble, "files.home.test") for _ in range(2)]


def test_each_issuance_gets_a_fresh_certificate_key(two_certs: list[IssuedCert]) -> None:
    assert two_certs[0].key_pem != two_certs[1].key_pem
    assert two_certs[0].cert_pem != two_certs[1].cert_pem


# --- responder -------------------------------------------------------------------------------


def http_get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def test_http_responder_answers_only_its_tokens() -> None:
    token = "t0ken-Abc_123456789"
    with ChallengeResponder("http-01") as responder:
        responder.set(token, f"{token}.thumb")
        assert http_get(responder.port, f"/.well-known/acme-challenge/{token}") == (
            200,
            f"{token}.thumb".encode(),
        )
        assert http_get(responder.port, "/.well-known/acme-challenge/other")[0] == 404
        assert http_get(responder.port, f"/{token}")[0] == 404
        assert http_get(responder.port, "/")[0] == 404
        assert http_get(responder.port, f"/.well-known/acme-challenge/{token}", "POST")[0] == 404
        port = responder.port
    assert not port_open(port)


def test_http_responder_refuses_a_malformed_token() -> None:
    with ChallengeResponder("http-01") as responder, pytest.raises(ValueError, match=r"^token: "):
        responder.set("../../etc/passwd", "x.y")


def tls_handshake(port: int, server_name: str, alpn: list[str] | None) -> x509.Certificate:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the validator checks the extension, not a chain
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        assert tls.selected_alpn_protocol() == (alpn[0] if alpn else None)
        return x509.load_der_x509_certificate(der)


def test_tls_alpn_responder_presents_the_challenge_certificate_for_its_name_only() -> None:
    cert, key = challenge_certificate("alpn.home.test", "tok.thumb")
    with ChallengeResponder("tls-alpn-01") as responder:
        responder.set_cert("alpn.home.test", cert, key)

        presented = tls_handshake(responder.port, "alpn.home.test", ["acme-tls/1"])

        assert presented == cert
        extension = presented.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
        assert extension.critical
        with pytest.raises(ssl.SSLError):
            tls_handshake(responder.port, "other.home.test", ["acme-tls/1"])
        port = responder.port
    assert not port_open(port)


def test_tls_alpn_responder_drops_clients_that_do_not_speak_acme_tls() -> None:
    cert, key = challenge_certificate("alpn.home.test", "tok.thumb")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    with ChallengeResponder("tls-alpn-01") as responder:
        responder.set_cert("alpn.home.test", cert, key)
        with (
            socket.create_connection(("127.0.0.1", responder.port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname="alpn.home.test") as tls,
        ):
            assert tls.selected_alpn_protocol() is None
            # The responder hangs up without sending anything (a timeout would raise here).
            assert tls.recv(1) == b""


def test_a_responder_can_listen_on_a_chosen_port() -> None:
    port = free_port()
    with ChallengeResponder("http-01", port=port) as responder:
        assert responder.port == port
        assert port_open(port)
    assert not port_open(port)


def unix_get(path: Path, url: str) -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: cloud.test\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def test_http_responder_on_a_unix_socket_replaces_a_stale_one_and_removes_it(
    tmp_path: Path,
) -> None:
    token = "t0ken-Abc_123456789"
    path = tmp_path / "acme.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # a killed run's socket, nobody listening
        stale.bind(str(path))
    with ChallengeResponder("http-01", socket_path=path) as responder:
        responder.set(token, f"{token}.thumb")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert unix_get(path, f"/.well-known/acme-challenge/{token}") == (
            200,
            f"{token}.thumb".encode(),
        )
        assert unix_get(path, "/.well-known/acme-challenge/other")[0] == 404
        with pytest.raises(RuntimeError, match="no port"):
            _ = responder.port
    assert not path.exists()


def test_http_responder_never_removes_what_is_not_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "acme.sock"
    path.write_text("someone's file")
    with pytest.raises(ValueError, match="exists and is not a socket"):
        ChallengeResponder("http-01", socket_path=path).start()
    assert path.read_text() == "someone's file"
    with pytest.raises(ValueError, match=r"^socket_path: "):
        ChallengeResponder("tls-alpn-01", socket_path=path)
