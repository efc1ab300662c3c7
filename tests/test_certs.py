"""The development CA: what the certificates say, file modes, and refusing to replace a CA."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedlearn.certs import make_dev_certs
from fedlearn.errors import ConfigError


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_writes_ca_and_party_files(tmp_path: Path) -> None:
    written = make_dev_certs(tmp_path / "certs", ["party-a", "party-b"])
    names = ["ca.pem", "ca.key", "party-a.pem", "party-a.key", "party-b.pem", "party-b.key"]
    assert sorted(written) == sorted(names)
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == sorted(names)  # no temp files
    for name in ("ca.key", "party-a.key", "party-b.key"):
        assert stat.S_IMODE(written[name].stat().st_mode) == 0o600


def test_party_certificate_contents(tmp_path: Path) -> None:
    written = make_dev_certs(tmp_path, ["party-a"], hosts=("localhost", "127.0.0.1", "::1"))
    ca, cert = _cert(written["ca.pem"]), _cert(written["party-a.pem"])
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "party-a"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["party-a", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(written["party-a.key"].read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*public) == cert.public_key().public_bytes(*public)


def test_rsa_keys_and_validity_days(tmp_path: Path) -> None:
    written = make_dev_certs(tmp_path, ["b"], key_type="rsa", days=10)
    key = serialization.load_pem_private_key(written["b.key"].read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    cert = _cert(written["b.pem"])
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 10 * 86400 <= lifetime.total_seconds() <= 10 * 86400 + 3600


def test_refuses_to_replace_a_ca_unless_forced(tmp_path: Path) -> None:
    first = make_dev_certs(tmp_path, ["party-a"])
    ca_before = first["ca.pem"].read_bytes()
    with pytest.raises(ConfigError, match=r"ca\.pem already exists.*force"):
        make_dev_certs(tmp_path, ["party-a"])
    assert first["ca.pem"].read_bytes() == ca_before
    second = make_dev_certs(tmp_path, ["party-a"], force=True)
    assert second["ca.pem"].read_bytes() != ca_before
    _cert(second["party-a.pem"]).verify_directly_issued_by(_cert(second["ca.pem"]))


@pytest.mark.parametrize(
    ("parties", "message"),
    [
        (["party a"], "not allowed"),
        (["../evil"], "not allowed"),
        (["-a"], "not allowed"),
        ([""], "not allowed"),
        (["ca"], "reserved"),
        (["a", "a"], "listed twice"),
        ([], "no parties"),
        ("party-a", "list of names"),
    ],
)
def test_rejects_bad_party_names(tmp_path: Path, parties: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_dev_certs(tmp_path, parties)
    assert not any(tmp_path.iterdir())


def test_allowed_party_name_characters(tmp_path: Path) -> None:
    written = make_dev_certs(tmp_path, ["Party_B.prod-2"])
    assert "Party_B.prod-2.pem" in written
