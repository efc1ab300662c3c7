"""A development certificate authority and one key and certificate per party.

``make_dev_certs`` is what ``fedlearn certs`` calls. It writes, into one directory:

- ``ca.pem`` / ``ca.key``: a self-signed CA (basic constraints CA, path length 0);
- ``<party>.pem`` / ``<party>.key``: one leaf per party, signed by that CA, with CN = the party
  name, SAN = ``DNS:<party>`` plus the given hosts (DNS names and IP addresses), and extended key
  usage serverAuth + clientAuth, so the same pair serves as a node's server certificate and as its
  client certificate when it calls the other node.

Keys are unencrypted PKCS#8 PEM (gRPC cannot read encrypted keys), written with mode 0600. Every
file is written to a temporary file in the same directory and moved into place with ``os.replace``,
so a reader never sees half a file. These certificates are for development and tests: a real
deployment uses each organisation's own PKI.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedlearn.atomic import write_atomic
from fedlearn.errors import ConfigError

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: A party name: what goes in the certificate's CN and in B's allow list.
PARTY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CA_COMMON_NAME = "fedlearn development CA"
# Certificates are valid from a few minutes in the past, so a peer whose clock is slightly behind
# does not reject a certificate made a second ago.
_CLOCK_SKEW = dt.timedelta(minutes=5)
_RESERVED_NAMES = frozenset({"ca"})


def ca_fingerprint(ca_pem: Path) -> str:
    """``"sha256:<hex>"`` of the (first) certificate in ``ca_pem``: what ``[tls.pins]`` takes."""
    from fedlearn.transport.tls import fingerprint

    return fingerprint(x509.load_pem_x509_certificates(Path(ca_pem).read_bytes())[0])


def make_dev_certs(
    out_dir: Path,
    parties: Sequence[str],
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    days: int = 365,
    key_type: KeyType = "ec",
    force: bool = False,
) -> dict[str, Path]:
    """Write a development CA and a key and certificate for each party into ``out_dir``.

    ``key_type`` is ``"ec"`` (ECDSA P-256, the default) or ``"rsa"`` (RSA 2048). Returns the written
    paths keyed by file name: ``{"ca.pem": ..., "ca.key": ..., "party-a.pem": ..., ...}``.

    Raises ``ConfigError`` for a bad party name, a duplicate party, a bad ``days`` or
    ``key_type``, or when ``out_dir`` already holds a CA and ``force`` is false (certificates
    already handed out would stop matching a new CA).
    """
    out_dir = Path(out_dir)
    names = _check_parties(parties)
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")
    if key_type not in ("ec", "rsa"):
        raise ConfigError(f"key_type must be 'ec' or 'rsa', got {key_type!r}")
    existing = [out_dir / n for n in ("ca.pem", "ca.key") if (out_dir / n).exists()]
    if existing and not force:
        raise ConfigError(
            f"{existing[0]} already exists; replacing the CA invalidates every certificate it "
            "issued. Choose another output directory, or pass force=True (fedlearn certs --force) "
            "to replace the CA and all party certificates"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    now = dt.datetime.now(dt.timezone.utc)
    not_before, not_after = now - _CLOCK_SKEW, now + dt.timedelta(days=days)
    ca_key = _new_key(key_type)
    ca_cert = _ca_certificate(ca_key, not_before, not_after)
    written = {
        "ca.key": write_atomic(out_dir / "ca.key", _key_pem(ca_key), mode=0o600),
        "ca.pem": write_atomic(out_dir / "ca.pem", _cert_pem(ca_cert), mode=0o644),
    }
    written.update(_issue(out_dir, names, hosts, key_type, ca_key, ca_cert, not_before, not_after))
    return written


def _check_parties(parties: Sequence[str]) -> list[str]:
    if isinstance(parties, str):
        raise ConfigError(f"parties must be a list of names, got the string {parties!r}")
    names = [p.strip() for p in parties]
    if not names:
        raise ConfigError("no parties given; name at least one, e.g. --parties party-a,party-b")
    seen: set[str] = set()
    for name in names:
        if not PARTY_NAME.match(name):
            raise ConfigError(
                f"party name {name!r} is not allowed: use 1-64 letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )
        if name.lower() in _RESERVED_NAMES:
            raise ConfigError(f"party name {name!r} is reserved for the CA's own files")
        if name in seen:
            raise ConfigError(f"party {name!r} is listed twice")
        seen.add(name)
    return names


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _ca_certificate(
    key: PrivateKey, not_before: dt.datetime, not_after: dt.datetime
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _party_certificate(
    party: str,
    key: PrivateKey,
    hosts: list[x509.GeneralName],
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    san = [x509.DNSName(party), *(h for h in hosts if h != x509.DNSName(party))]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA key exchange needs key encipherment; ECDSA keys only sign.
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _serial() -> int:
    # RFC 5280: positive, at most 20 octets; 159 random bits keep it both unique and in range.
    return secrets.randbits(159) | 1


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def add_party_certs(
    out_dir: Path,
    parties: Sequence[str],
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    days: int = 365,
) -> dict[str, Path]:
    """Issue certificates for more parties with the CA already in ``out_dir`` (ca.pem, ca.key).

    Raises ``ConfigError`` when the CA files are missing or a party's files already exist.
    """
    out_dir = Path(out_dir)
    names = _check_parties(parties)
    try:
        ca_cert = x509.load_pem_x509_certificate((out_dir / "ca.pem").read_bytes())
        ca_key = serialization.load_pem_private_key(
            (out_dir / "ca.key").read_bytes(), password=None
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{out_dir}: no usable CA (ca.pem and ca.key): {exc}; make one with `fedlearn certs`"
        ) from exc
    if not isinstance(ca_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ConfigError(f"{out_dir / 'ca.key'}: expected an EC or RSA key")
    for name in names:
        if (out_dir / f"{name}.pem").exists():
            raise ConfigError(f"{out_dir / (name + '.pem')} already exists; remove it first")
    key_type: KeyType = "rsa" if isinstance(ca_key, rsa.RSAPrivateKey) else "ec"
    now = dt.datetime.now(dt.timezone.utc)
    not_before, not_after = now - _CLOCK_SKEW, now + dt.timedelta(days=days)
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    return _issue(out_dir, names, hosts, key_type, ca_key, ca_cert, not_before, not_after)


def _issue(
    out_dir: Path,
    names: list[str],
    hosts: Sequence[str],
    key_type: KeyType,
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> dict[str, Path]:
    """A key and a certificate signed by the CA for each party; written atomically."""
    san = _subject_alt_names(hosts)
    written = {}
    for name in names:
        key = _new_key(key_type)
        cert = _party_certificate(name, key, san, ca_key, ca_cert, not_before, not_after)
        written[f"{name}.key"] = write_atomic(out_dir / f"{name}.key", _key_pem(key), mode=0o600)
        written[f"{name}.pem"] = write_atomic(out_dir / f"{name}.pem", _cert_pem(cert), mode=0o644)
    return written
