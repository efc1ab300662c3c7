"""Mutual TLS: credentials for both ends, the peer's identity, and checks on the PEM files.

The server requires a client certificate signed by the configured CA (``require_client_auth``); the
client verifies the server's certificate against the same kind of CA and presents its own. A node's
identity is the name in its certificate: the common name, or else the first DNS subject alternative
name. B's allow list holds these names.

Per-partner CA pinning
----------------------
A CA bundle may hold several CAs (each organisation's own, say), and any of them can issue a
certificate carrying any name, so "a certificate from the bundle that says party-a" is not enough.
``[tls.pins]`` names, per partner, the SHA-256 fingerprint of the one CA allowed to issue that
partner's certificate (``fingerprint``; ``fedlearn certs`` prints it). The client trusts only the
CA pinned for the server it dials; the server accepts client certificates from the pinned CAs only,
and ``peer_identity`` refuses a name whose certificate was not issued directly by the CA pinned for
that very name. A bundle of more than one CA without pins is refused at start-up.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from fedlearn.errors import ConfigError, PolicyViolation

if TYPE_CHECKING:
    from fedlearn.transport.config import TransportConfig

_FIX = "make development certificates with `fedlearn certs`, or point the key at the right file"


def server_credentials(cfg: TransportConfig) -> grpc.ServerCredentials:
    """Server credentials: present ``cfg.cert``, require a client certificate from ``cfg.ca``
    (from the pinned CAs only, when ``cfg.pins`` names any).

    Raises ``ConfigError`` when the config is insecure, a file is missing or a pin names no CA of
    the bundle (call ``cfg.validate`` first for messages that name the config file).
    """
    ca, cert, key = _tls_files(cfg)
    if cfg.pins:
        names = {name for name, _ in cfg.pins} | {name_of(_own_certificate(cfg))}
        found = (_expected_issuer(cfg, name) for name in names if name is not None)
        issuers = sorted({der for der in found if der is not None})
        ca = b"".join(_cert_pem(x509.load_der_x509_certificate(der)) for der in issuers)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(
    cfg: TransportConfig, peer_name: str | None = None
) -> grpc.ChannelCredentials:
    """Channel credentials that verify the server against ``cfg.ca`` and present ``cfg.cert``.

    When ``cfg.pins`` names any CA, the server is verified against the CA pinned for ``peer_name``
    alone; a peer without a pin is then a ``ConfigError``.
    """
    ca, cert, key = _tls_files(cfg)
    if cfg.pins:
        issuer = _expected_issuer(cfg, peer_name or "")
        if issuer is None:
            raise ConfigError(
                f"[tls.pins] names no CA for the peer {peer_name!r}: add "
                f'{peer_name or "<peer name>"} = "<sha256 fingerprint of the CA that issues its '
                'certificate>" (fedlearn certs prints it)'
            )
        ca = _cert_pem(x509.load_der_x509_certificate(issuer))
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def peer_identity(context: grpc.ServicerContext, cfg: TransportConfig | None = None) -> str | None:
    """The calling client's certificate name (CN, else first SAN DNS name); None on plaintext.

    With ``require_client_auth`` a TLS call always carries a verified client certificate, so None
    means the server runs insecure (loopback only). With ``cfg`` and pins in it, the name counts
    only if its certificate was issued directly by the CA pinned for that name: raises
    ``PolicyViolation`` otherwise (a certificate for "party-a" from another CA of the bundle).
    """
    auth = context.auth_context()
    name = _first_name(auth)
    if name is None or cfg is None or not cfg.pins:
        return name
    issuer = _expected_issuer(cfg, name)
    pems = auth.get("x509_pem_cert") or []
    if issuer is None or not pems:
        raise PolicyViolation(f"no CA is pinned for {name!r} on this node; refused")
    leaf = x509.load_pem_x509_certificate(pems[0])
    try:
        leaf.verify_directly_issued_by(x509.load_der_x509_certificate(issuer))
    except (ValueError, TypeError, InvalidSignature):
        raise PolicyViolation(
            f"the certificate for {name!r} was not issued by the CA pinned for that name; refused"
        ) from None
    return name


def _expected_issuer(cfg: TransportConfig, name: str) -> bytes | None:
    """DER of the CA that must have issued ``name``'s certificate: the one pinned for it, or for
    this node's own name (A's CLI calls A's node with A's certificate) the CA that issued this
    node's own certificate. None when neither applies."""
    return _issuer_cached(cfg.ca, cfg.cert, cfg.pin_for(name), name)


@functools.lru_cache(maxsize=64)
def _issuer_cached(
    ca_path: Path | None, cert_path: Path | None, pin: str | None, name: str
) -> bytes | None:
    if ca_path is None or cert_path is None:
        return None
    bundle = check_ca_bundle(Path(ca_path).read_bytes(), what=str(ca_path))
    if pin is not None:
        return pinned_ca(bundle, pin, what=f"[tls.pins] {name}").public_bytes(
            serialization.Encoding.DER
        )
    own = check_certificate(Path(cert_path).read_bytes(), what=str(cert_path))
    if name_of(own) != name:
        return None
    for ca in bundle:
        try:
            own.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca.public_bytes(serialization.Encoding.DER)
    return None


def _own_certificate(cfg: TransportConfig) -> x509.Certificate:
    assert cfg.cert is not None
    return check_certificate(Path(cfg.cert).read_bytes(), what=str(cfg.cert))


def _first_name(auth: dict[str, list[bytes]]) -> str | None:
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        values = auth.get(key) or []
        for value in values:
            name = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if name:
                return name
    return None


def fingerprint(cert: x509.Certificate) -> str:
    """``"sha256:<64 hex digits>"``: the SHA-256 of the certificate's DER encoding."""
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


_FINGERPRINT = re.compile(r"^(?:sha256:)?((?:[0-9a-f]{2}:?){31}[0-9a-f]{2})$")


def parse_fingerprint(text: str, *, what: str) -> str:
    """A pin as written in a config (``sha256:`` optional, hex in any case, colons optional), in
    the form ``fingerprint`` gives. Raises ``ConfigError`` for anything else."""
    match = _FINGERPRINT.match(text.strip().lower())
    if match is None:
        raise ConfigError(
            f"{what}: {text!r} is not a SHA-256 certificate fingerprint; expected "
            '"sha256:" and 64 hex digits, as `fedlearn certs` prints it'
        )
    return "sha256:" + match.group(1).replace(":", "")


def pinned_ca(bundle: list[x509.Certificate], pin: str, *, what: str) -> x509.Certificate:
    """The CA of ``bundle`` whose fingerprint is ``pin``; ``ConfigError`` naming those it holds."""
    for cert in bundle:
        if fingerprint(cert) == pin:
            return cert
    held = "; ".join(f"{cert.subject.rfc4514_string()}: {fingerprint(cert)}" for cert in bundle)
    raise ConfigError(
        f"{what}: no CA in the [tls] ca bundle has the fingerprint {pin}; the bundle holds {held}"
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_name(cert_pem_path: Path | str) -> str:
    """This node's own name from its certificate: the CN, else the first SAN DNS name.

    Raises ``ConfigError`` when the file is missing, not a PEM certificate, or carries no name.
    """
    path = Path(cert_pem_path)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read certificate {path}: {exc.strerror or exc}") from exc
    name = name_of(check_certificate(pem, what=str(path), check_validity=False))
    if name is None:
        raise ConfigError(f"{path}: the certificate has neither a common name nor a DNS name")
    return name


def name_of(cert: x509.Certificate) -> str | None:
    """The CN of ``cert``, else its first SAN DNS name, else None."""
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        name = value.decode() if isinstance(value, bytes) else value
        if name:
            return name
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    dns_names = san.get_values_for_type(x509.DNSName)
    return dns_names[0] if dns_names else None


def check_ca_bundle(pem: bytes, *, what: str) -> list[x509.Certificate]:
    """Parse a CA file: one or more PEM certificates. ``what`` prefixes the ``ConfigError``."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(f"{what} is not a PEM certificate file ({exc}); {_FIX}") from exc
    return certs


def check_certificate(pem: bytes, *, what: str, check_validity: bool = True) -> x509.Certificate:
    """Parse a PEM certificate (the first, when the file holds a chain) and check its dates."""
    try:
        cert = x509.load_pem_x509_certificates(pem)[0]
    except ValueError as exc:
        raise ConfigError(f"{what} is not a PEM certificate file ({exc}); {_FIX}") from exc
    if check_validity:
        now = dt.datetime.now(dt.timezone.utc)
        if now > cert.not_valid_after_utc:
            raise ConfigError(
                f"{what}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                "issue a new one (for development: `fedlearn certs --force`)"
            )
        if now < cert.not_valid_before_utc:
            raise ConfigError(
                f"{what}: the certificate is not valid before "
                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check this machine's clock"
            )
    return cert


def check_key_pair(cert: x509.Certificate, key_pem: bytes, *, what: str, cert_path: Path) -> None:
    """Check that ``key_pem`` is an unencrypted private key whose public half is in ``cert``."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:  # encrypted key: gRPC cannot use it
        raise ConfigError(
            f"{what} is encrypted with a passphrase; gRPC needs an unencrypted key (mode 0600)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{what} is not a PEM private key ({exc}); {_FIX}") from exc
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != cert.public_key().public_bytes(*public):
        raise ConfigError(
            f"{what} does not belong to the certificate {cert_path}: give the key that was made "
            "with that certificate"
        )


def _tls_files(cfg: TransportConfig) -> tuple[bytes, bytes, bytes]:
    if cfg.insecure or cfg.ca is None or cfg.cert is None or cfg.key is None:
        raise ConfigError(
            "TLS credentials need ca, cert and key, and insecure = false; "
            "call TransportConfig.validate first for a message naming the config key"
        )
    paths = (cfg.ca, cfg.cert, cfg.key)
    try:
        return Path(paths[0]).read_bytes(), Path(paths[1]).read_bytes(), Path(paths[2]).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror or exc}") from exc
