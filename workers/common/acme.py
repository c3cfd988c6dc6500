"""Both sites' one door to an ACME CA: account key and registration, ordering a certificate
through HTTP-01 or TLS-ALPN-01 answered by our ChallengeResponder, and writing the result.

Making the responder reachable from the CA is the caller's job, done inside the `expose` hook
(the home: a mapping and a tunnel; the cloud: its own HAProxy's :80); every failure on the CA
side becomes an AcmeError with one readable sentence.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

import josepy as jose
import requests
from acme import challenges, crypto_util, errors, messages
from acme.client import ClientNetwork, ClientV2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from workers.common.acme_responder import ChallengeResponder
from workers.common.files import write_atomic
from workers.common.names import validate_hostname

logger = logging.getLogger(__name__)

ChallengeType = Literal["http-01", "tls-alpn-01"]
CHALLENGE_TYPES: tuple[ChallengeType, ...] = ("http-01", "tls-alpn-01")
# The caller's hook that makes a listening responder reachable by the CA while entered.
Expose = Callable[[ChallengeResponder], AbstractContextManager[None]]
USER_AGENT = "cloudathome-acme"

# RFC 8737 section 3: id-pe-acmeIdentifier.
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")

_EMAIL = re.compile(r"^[^@\s,;:<>()\[\]\"\\]+@[a-z0-9]([a-z0-9.-]*[a-z0-9])?\.[a-z]{2,63}$", re.I)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"\)\]]+)|certificate verify failed: ([^'\"\(\)]+)")


class AcmeError(Exception):
    """A certificate could not be obtained; str() is one sentence meant for the user."""


@dataclass(frozen=True)
class AcmeSettings:
    directory_url: str
    ca_bundle: str | None  # CA of the ACME server's own HTTPS; None = the system's roots
    account_key_path: Path
    timeout: float = 30  # seconds, for each request and for each wait on the CA
    # http-01 answered on this unix socket instead of a free port of 127.0.0.1.
    responder_socket: Path | None = None

    def __post_init__(self) -> None:
        url = urlsplit(self.directory_url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"directory_url: must be an https:// URL, not {self.directory_url!r}")
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ValueError(f"ca_bundle: {self.ca_bundle} is not a file")
        if not 0 < self.timeout <= 3600:
            raise ValueError(f"timeout: must be between 0 and 3600 seconds, not {self.timeout}")


@dataclass(frozen=True)
class IssuedCert:
    fullchain_pem: str
    cert_pem: str
    chain_pem: str
    key_pem: str = field(repr=False)
    not_after: datetime.datetime
    account_url: str = ""


def validate_email(email: str) -> str:
    """The address, or ValueError; an empty string means "register without a contact"."""
    email = email.strip()
    if email and (len(email) > 254 or not _EMAIL.match(email)):
        raise ValueError(f"email: {email!r} is not an email address")
    return email


def cert_not_after(pem: str | bytes) -> datetime.datetime:
    """Expiry (UTC) of the first certificate in `pem`."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificate(data).not_valid_after_utc


def self_signed(
    host: str,
    days: int = 2,
    subject: x509.Name | None = None,
    critical: x509.ExtensionType | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate for `host` (its SAN; its subject CN unless `subject` is given,
    with a `critical` extension if any) and its new key (EC P-256): a local service's in the
    tests and benchmarks, the cloud's placeholder until its CA has issued the real one, and
    the TLS-ALPN-01 answer."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = (
        subject
        if subject is not None
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    )
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
    )
    if critical is not None:
        builder = builder.add_extension(critical, critical=True)
    return builder.sign(key, hashes.SHA256()), key


def challenge_certificate(
    domain: str, key_authorization: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The self-signed certificate RFC 8737 asks for: SAN = the domain only, and the critical
    acmeIdentifier extension holding SHA-256(key authorization)."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    # The extension value is the DER OCTET STRING (tag 4, length 32) around the digest.
    extension = x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest)
    return self_signed(domain, 7, subject=x509.Name([]), critical=extension)


def renew_backoff(failures: int) -> datetime.timedelta:
    """A failed issuance or renewal is tried again by beat after 1, 2, 4 ... hours, at most
    daily: each try costs the CA's failed-validation budget."""
    return datetime.timedelta(hours=min(2 ** max(failures - 1, 0), 24))


# --- account -------------------------------------------------------------------------------


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _account_key(path: Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """Load the account key, creating it (EC P-256, 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # link() never replaces: when two runs race, both end up using the first key.
        with contextlib.suppress(FileExistsError):
            write_atomic(
                path, private_pem(ec.generate_private_key(ec.SECP256R1())), 0o600, replace=False
            )
    if path.stat().st_mode & 0o077:
        logger.warning("account key %s was readable by others; setting it to 0600", path)
        path.chmod(0o600)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise AcmeError(f"the ACME account key {path} is not an unencrypted PEM key") from exc
    if isinstance(key, rsa.RSAPrivateKey) or (
        isinstance(key, ec.EllipticCurvePrivateKey)
        and isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1)
    ):
        return key
    raise AcmeError(f"the ACME account key {path} must be RSA or EC P-256/P-384")


def _jwk(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> tuple[jose.JWK, jose.JWASignature]:
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    if isinstance(key.curve, ec.SECP384R1):
        return jose.JWKEC(key=key), jose.ES384
    return jose.JWKEC(key=key), jose.ES256


@dataclass
class _Session:
    client: ClientV2
    jwk: jose.JWK
    account_url: str


def _connect(settings: AcmeSettings, email: str) -> _Session:
    """Fetch the directory and register the account (or find it: same key, same account)."""
    jwk, alg = _jwk(_account_key(settings.account_key_path))
    # requests takes a CA bundle path where acme's hint says bool; the timeout may be a float.
    verify: Any = settings.ca_bundle or True
    timeout: Any = settings.timeout
    net = ClientNetwork(jwk, alg=alg, verify_ssl=verify, user_agent=USER_AGENT, timeout=timeout)
    client = ClientV2(ClientV2.get_directory(settings.directory_url, net), net)
    contact = (f"mailto:{email}",) if email else ()
    try:
        regr = client.new_account(
            messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
        )
    except errors.ConflictError as existing:
        regr = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
        net.account = regr
        regr = client.query_registration(regr)
        if tuple(regr.body.contact) != contact:
            regr = client.update_registration(regr, messages.Registration(contact=contact))
    return _Session(client, jwk, str(regr.uri))


def account_register(settings: AcmeSettings, email: str) -> str:
    """Register the account of `settings.account_key_path` (idempotent); returns its URL."""
    email = validate_email(email)
    with _acme_errors("ACME account", settings):
        session = _connect(settings, email)
    session.client.net.session.close()
    return session.account_url


# --- errors --------------------------------------------------------------------------------

_PROBLEMS = {
    "connection": "the CA could not connect to the challenge responder",
    "dns": "the CA could not look the name up in DNS",
    "unknownHost": "the CA could not resolve the name",
    "unauthorized": "the CA got a wrong answer from the challenge responder",
    "incorrectResponse": "the CA got a wrong answer from the challenge responder",
    "tls": "the TLS handshake between the CA and the challenge responder failed",
    "caa": "a CAA record of the domain forbids this CA to issue for it",
    "rateLimited": "the CA's rate limit was reached, try again later",
    "rejectedIdentifier": "the CA refuses to issue certificates for this name",
    "unsupportedIdentifier": "the CA does not issue certificates for this kind of name",
    "badCSR": "the CA rejected the certificate request",
    "serverInternal": "the CA had an internal error, try again later",
    "accountDoesNotExist": "the ACME account does not exist at this CA",
    "userActionRequired": "the CA wants the account holder to act first (new terms of service?)",
    "externalAccountRequired": "the CA requires an external account binding",
    "invalidContact": "the CA rejected the contact email",
    "unsupportedContact": "the CA rejected the contact email",
    "malformed": "the CA rejected a request as malformed",
}
# CAs word the same failure differently (Pebble reports an unresolvable name as "connection" or
# "malformed"); these phrases of the detail decide the sentence before the problem type does.
_DNS_PHRASES = ("could not resolve", "no such host", "servfail", "nxdomain", "dns problem")
_CONNECT_PHRASES: dict[str, str | None] = {  # phrase -> short cause (None: keep the detail)
    "connection refused": "connection refused",
    "failed to connect": None,
    "connection reset": "connection reset",
    "i/o timeout": "timed out",
    "timeout": "timed out",
    "no route to host": "no route to host",
    "network is unreachable": "network unreachable",
}
_VALIDATION_CODES = {"connection", "tls", "unauthorized", "incorrectResponse", "malformed"}
_URL = re.compile(r"\"?https?://([^/\s\"]+)[^\s\"]*\"?")


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_problem(subject: str, problem: messages.Error) -> str:
    """One sentence from an RFC 8555 problem document, e.g. "a.example: the CA could not
    connect to the challenge responder (connection refused)"."""
    if problem.subproblems:
        problem = problem.subproblems[0]
    code = str(problem.typ).rsplit(":", 1)[-1]
    # A URL carries the token and path: noise to a user, so only its host:port is kept.
    detail = _one_line(_URL.sub(r"\1", problem.detail or problem.title or ""))
    lowered = detail.lower()
    if code in _VALIDATION_CODES | {"dns", "unknownHost"}:
        if any(phrase in lowered for phrase in _DNS_PHRASES):
            code = "dns"
        else:
            found = [phrase for phrase in _CONNECT_PHRASES if phrase in lowered]
            if found:
                code, detail = "connection", _CONNECT_PHRASES[found[0]] or detail
    reason = _PROBLEMS.get(code, f"the CA refused the request ({code})")
    return f"{subject}: {reason} ({detail})" if detail else f"{subject}: {reason}"


def _network_cause(exc: BaseException) -> str:
    found = _ERRNO.search(str(exc))
    if found:
        return (found.group(1) or found.group(2)).strip().lower()
    return _one_line(str(exc), 120) or "no details"


@contextlib.contextmanager
def _acme_errors(subject: str, settings: AcmeSettings) -> Iterator[None]:
    """Turn whatever the ACME library and requests raise into one-sentence AcmeErrors."""
    server = urlsplit(settings.directory_url).netloc
    try:
        yield
    except AcmeError:
        raise
    except messages.Error as problem:
        raise AcmeError(describe_problem(subject, problem)) from problem
    except errors.IssuanceError as exc:
        raise AcmeError(describe_problem(subject, exc.error)) from exc
    except errors.TimeoutError as exc:
        raise AcmeError(
            f"{subject}: the CA did not issue the certificate within {settings.timeout:g} s"
        ) from exc
    except requests.exceptions.SSLError as exc:
        raise AcmeError(
            f"{subject}: the ACME server {server} presented a certificate that the configured "
            f"CA bundle does not trust ({_network_cause(exc)})"
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise AcmeError(
            f"{subject}: the ACME server {server} did not answer within {settings.timeout:g} s"
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise AcmeError(
            f"{subject}: could not reach the ACME server {server} ({_network_cause(exc)})"
        ) from exc
    except (errors.Error, jose.DeserializationError, ValueError, KeyError) as exc:
        raise AcmeError(
            f"{subject}: the ACME server {server} sent an unexpected answer "
            f"({_one_line(str(exc), 160) or type(exc).__name__})"
        ) from exc


# --- issuance ------------------------------------------------------------------------------


class _ChallengeReady(challenges.KeyAuthorizationChallengeResponse):
    """The `{}` posted to a challenge URL to say "validate now" (RFC 8555 7.5.1).

    acme 5 dropped TLS-ALPN-01, so this stands in for its response class. It is deliberately
    not registered: the key authorization field only keeps the payload non-empty (an empty
    object would be sent as a POST-as-GET) and is stripped before sending.
    """

    typ = "tls-alpn-01"


def _ignore_step(step: str) -> None:
    pass


def _key_authorization(challb: messages.ChallengeBody, jwk: jose.JWK) -> tuple[str, str]:
    token = challb.chall.to_partial_json().get("token")
    if not isinstance(token, str) or not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", token):
        raise AcmeError(f"the CA sent a challenge token that is not base64url: {token!r}")
    thumbprint = jose.b64encode(jwk.thumbprint(hash_function=hashes.SHA256)).decode()
    return token, f"{token}.{thumbprint}"


def _challenge_type(challb: messages.ChallengeBody) -> str:
    return str(challb.chall.to_partial_json().get("type", ""))


def _failed_authorization(domain: str, authzr: messages.AuthorizationResource) -> NoReturn:
    for challb in authzr.body.challenges:
        if challb.error is not None:
            raise AcmeError(describe_problem(domain, challb.error))
    raise AcmeError(f"{domain}: the CA marked the authorization {authzr.body.status.name}")


def _wait_valid(
    session: _Session, domain: str, authzr: messages.AuthorizationResource, timeout: float
) -> None:
    """Poll the authorization until the CA has decided, honouring Retry-After within a deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        authzr, response = session.client.poll(authzr)
        status = authzr.body.status
        if status == messages.STATUS_VALID:
            return
        if status not in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
            _failed_authorization(domain, authzr)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AcmeError(
                f"{domain}: the CA did not finish validating the challenge within {timeout:g} s"
            )
        retry_at = session.client.retry_after(response, default=0)
        wait = max(delay, (retry_at - datetime.datetime.now()).total_seconds())
        time.sleep(min(wait, remaining))
        delay = min(delay * 2, 2.0)


def _deactivate_pending(session: _Session, order: messages.OrderResource) -> None:
    """Release authorizations we will not answer, so they do not count against CA limits."""
    for authzr in order.authorizations:
        with contextlib.suppress(Exception):
            current, _ = session.client.poll(authzr)
            if current.body.status == messages.STATUS_PENDING:
                session.client.deactivate_authorization(current)


def _authorize(
    session: _Session,
    domain: str,
    authzr: messages.AuthorizationResource,
    challenge: ChallengeType,
    expose: Expose,
    on_step: Callable[[str], None],
    settings: AcmeSettings,
) -> None:
    choices = [c for c in authzr.body.challenges if _challenge_type(c) == challenge]
    if not choices:
        offered = ", ".join(sorted(_challenge_type(c) for c in authzr.body.challenges))
        raise AcmeError(f"{domain}: the CA does not offer {challenge} (it offers {offered})")
    challb = choices[0]
    token, key_authorization = _key_authorization(challb, session.jwk)
    with ChallengeResponder(challenge, socket_path=settings.responder_socket) as responder:
        if challenge == "http-01":
            responder.set(token, key_authorization)
        else:
            responder.set_cert(domain, *challenge_certificate(domain, key_authorization))
        # Errors raised by the caller's expose() (cloud API, tunnel) pass through untouched.
        with expose(responder):
            on_step("challenge ready")
            with _acme_errors(domain, settings):
                session.client.answer_challenge(
                    challb, _ChallengeReady(key_authorization=key_authorization)
                )
            on_step("challenge answered")
            with _acme_errors(domain, settings):
                _wait_valid(session, domain, authzr, settings.timeout)


def _split_chain(fullchain: str) -> list[str]:
    return [pem if pem.endswith("\n") else pem + "\n" for pem in _PEM_CERT.findall(fullchain)]


def issue(
    settings: AcmeSettings,
    domain: str,
    email: str,
    challenge: ChallengeType,
    expose: Expose,
    on_step: Callable[[str], None] = _ignore_step,
) -> IssuedCert:
    """Obtain a certificate for `domain` with a fresh key, answering `challenge` ourselves.

    `expose(responder)` is entered once the responder listens (on 127.0.0.1:`responder.port`,
    or on `settings.responder_socket`) and must make it reachable where the CA validates (edge
    :80 for http-01, :443 for tls-alpn-01) until it exits. The responder is always stopped.
    Raises AcmeError, or ValueError for invalid arguments.
    """
    domain = validate_hostname(domain, "domain")
    email = validate_email(email)
    if challenge not in CHALLENGE_TYPES:
        raise ValueError(f"challenge: must be one of {', '.join(CHALLENGE_TYPES)}")

    with _acme_errors(domain, settings):
        session = _connect(settings, email)
    try:
        return _order(session, settings, domain, challenge, expose, on_step)
    finally:
        session.client.net.session.close()  # no keep-alive sockets left for the GC to find


def _order(
    session: _Session,
    settings: AcmeSettings,
    domain: str,
    challenge: ChallengeType,
    expose: Expose,
    on_step: Callable[[str], None],
) -> IssuedCert:
    cert_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = private_pem(cert_key)
    with _acme_errors(domain, settings):
        order = session.client.new_order(crypto_util.make_csr(key_pem, [domain]))
    on_step("order created")
    try:
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                on_step("authorization still valid")  # the CA reuses a recent validation
                continue
            if authzr.body.status != messages.STATUS_PENDING:
                _failed_authorization(domain, authzr)
            _authorize(session, domain, authzr, challenge, expose, on_step, settings)
    except AcmeError:
        raise
    except BaseException:
        _deactivate_pending(session, order)
        raise
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=settings.timeout)
    with _acme_errors(domain, settings):
        order = session.client.finalize_order(order, deadline)
    chain = _split_chain(order.fullchain_pem or "")
    if not chain:
        raise AcmeError(f"{domain}: the CA returned no certificate")
    leaf = x509.load_pem_x509_certificate(chain[0].encode("ascii"))
    if leaf.public_key() != cert_key.public_key():
        raise AcmeError(f"{domain}: the CA returned a certificate for another key")
    on_step("certificate issued")
    return IssuedCert(
        fullchain_pem="".join(chain),
        cert_pem=chain[0],
        chain_pem="".join(chain[1:]),
        key_pem=key_pem.decode("ascii"),
        not_after=leaf.not_valid_after_utc,
        account_url=session.account_url,
    )
