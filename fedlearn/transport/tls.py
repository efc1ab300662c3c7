"""Mutual TLS: credentials for both ends, the peer's identity, and checks on the PEM files.

The server requires a client certificate signed by the configured CA (``require_client_auth``); the
client verifies the server's certificate against the same kind of CA and presents its own. A node's
identity is the name in its certificate: the common name, or else the first DNS subject alternative
name. B's allow list holds these names.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from fedlearn.errors import ConfigError

if TYPE_CHECKING:
    from fedlearn.transport.config import TransportConfig

_FIX = "make development certificates with `fedlearn certs`, or point the key at the right file"


def server_credentials(cfg: TransportConfig) -> grpc.ServerCredentials:
    """Server credentials: present ``cfg.cert``, require a client certificate from ``cfg.ca``.

    Raises ``ConfigError`` when the config is insecure or a file is missing (call
    ``cfg.validate`` first for messages that name the config file).
    """
    ca, cert, key = _tls_files(cfg)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(cfg: TransportConfig) -> grpc.ChannelCredentials:
    """Channel credentials that verify the server against ``cfg.ca`` and present ``cfg.cert``."""
    ca, cert, key = _tls_files(cfg)
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def peer_identity(context: grpc.ServicerContext) -> str | None:
    """The calling client's certificate name (CN, else first SAN DNS name); None on plaintext.

    With ``require_client_auth`` a TLS call always carries a verified client certificate, so None
    means the server runs insecure (loopback only).
    """
    auth = context.auth_context()
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        values = auth.get(key) or []
        for value in values:
            name = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if name:
                return name
    return None


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
