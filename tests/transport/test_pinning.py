"""Per-partner CA pinning: with two CAs in the bundle, only the CA pinned for a name may vouch for it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from fedlearn import errors as fe
from fedlearn.transport import TransportConfig, call_unary
from fedlearn.transport.tls import fingerprint, parse_fingerprint, peer_identity

from .support import Certs, method


def _fp(certs: Certs) -> str:
    return fingerprint(x509.load_pem_x509_certificate((certs.dir / "ca.pem").read_bytes()))


@pytest.fixture
def bundle(certs: Certs, other_certs: Certs, tmp_path: Path) -> Path:
    """One CA file holding both CAs, as a shared bundle would."""
    path = tmp_path / "bundle.pem"
    path.write_bytes(
        (certs.dir / "ca.pem").read_bytes() + (other_certs.dir / "ca.pem").read_bytes()
    )
    return path


def _config(certs: Certs, party: str, ca: Path, **pins: str) -> TransportConfig:
    return replace(certs.config(party), ca=ca, pins=tuple(sorted(pins.items())))


def _serve_whoami(serve, cfg: TransportConfig):
    def whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
        return (peer_identity(context, cfg) or "<none>").encode()

    return serve(cfg, {"WhoAmI": grpc.unary_unary_rpc_method_handler(whoami)})


def _whoami(running, cfg: TransportConfig, server_name: str = "party-b") -> bytes:
    channel = running.channel(cfg, server_name=server_name)
    return call_unary(method(channel, "WhoAmI"), b"", deadline_s=5, peer=server_name)


def test_a_shared_bundle_without_pins_is_refused_at_start_up(
    certs: Certs, bundle: Path, serve
) -> None:
    """Issue 11: with a bundle of two CAs and no pins, a "party-a" certificate from either CA got
    in (shown against the code before pinning). Such a config no longer starts."""
    b_cfg = replace(certs.config("party-b"), ca=bundle)
    with pytest.raises(fe.ConfigError, match=r"holds 2 CAs.*pin the CA of each partner"):
        b_cfg.validate("127.0.0.1:0", source="b.toml")
    with pytest.raises(fe.ConfigError, match="holds 2 CAs"):
        _serve_whoami(serve, b_cfg)


def test_pinned_partner_gets_in(certs: Certs, other_certs: Certs, bundle: Path, serve) -> None:
    b_cfg = _config(certs, "party-b", bundle, **{"party-a": _fp(certs)})
    running = _serve_whoami(serve, b_cfg)
    a_cfg = _config(certs, "party-a", bundle, **{"party-b": _fp(certs)})
    assert _whoami(running, a_cfg) == b"party-a"


def test_certificate_for_the_right_name_from_an_unpinned_ca_is_refused(
    certs: Certs, other_certs: Certs, bundle: Path, serve
) -> None:
    b_cfg = _config(certs, "party-b", bundle, **{"party-a": _fp(certs)})
    running = _serve_whoami(serve, b_cfg)
    forged = _config(other_certs, "party-a", bundle, **{"party-b": _fp(certs)})
    with pytest.raises(fe.PeerUnavailable, match="TLS handshake"):
        _whoami(running, forged)


def test_ca_pinned_for_another_partner_cannot_vouch_for_this_one(
    certs: Certs, other_certs: Certs, bundle: Path, serve
) -> None:
    """The other CA is trusted (for mallory), so the handshake passes; the name check refuses."""
    b_cfg = _config(
        certs, "party-b", bundle, **{"party-a": _fp(certs), "mallory": _fp(other_certs)}
    )
    running = _serve_whoami(serve, b_cfg)
    assert _whoami(running, _config(other_certs, "mallory", bundle, **{"party-b": _fp(certs)})) == (
        b"mallory"
    )
    forged = _config(other_certs, "party-a", bundle, **{"party-b": _fp(certs)})
    with pytest.raises(fe.PolicyViolation, match="not issued by the CA pinned for that name"):
        _whoami(running, forged)


def test_client_refuses_a_server_certificate_from_the_ca_not_pinned_for_it(
    certs: Certs, other_certs: Certs, bundle: Path, serve
) -> None:
    impostor = _config(other_certs, "party-b", bundle, **{"party-a": _fp(certs)})
    running = _serve_whoami(serve, impostor)
    a_cfg = _config(certs, "party-a", bundle, **{"party-b": _fp(certs)})
    with pytest.raises(fe.PeerUnavailable, match="TLS handshake"):
        _whoami(running, a_cfg)
    # Pinned to the impostor's CA instead, the same client connects: the pin is what decides.
    trusting = _config(certs, "party-a", bundle, **{"party-b": _fp(other_certs)})
    assert _whoami(running, trusting) == b"party-a"


def test_pins_are_checked_at_start_up(certs: Certs, other_certs: Certs, tmp_path: Path) -> None:
    cfg = _config(certs, "party-b", certs.dir / "ca.pem", **{"party-a": _fp(other_certs)})
    with pytest.raises(
        fe.ConfigError, match="no CA in the \\[tls\\] ca bundle has the fingerprint"
    ):
        cfg.validate("127.0.0.1:0", source="b.toml")
    _config(certs, "party-b", certs.dir / "ca.pem", **{"party-a": _fp(certs)}).validate(
        "127.0.0.1:0", source="b.toml"
    )
    insecure = TransportConfig(insecure=True, pins=(("party-a", _fp(certs)),))
    with pytest.raises(fe.ConfigError, match="pins need TLS"):
        insecure.validate("127.0.0.1:0", source="b.toml")


def test_fingerprints_parse_in_the_usual_spellings(certs: Certs) -> None:
    fp = _fp(certs)
    digits = fp.removeprefix("sha256:")
    colons = ":".join(digits[i : i + 2] for i in range(0, 64, 2)).upper()
    assert parse_fingerprint(digits, what="x") == fp
    assert parse_fingerprint(f"SHA256:{colons}", what="x") == fp
    for bad in ("sha1:abcd", digits[:-2], digits + "00", "sha256:" + "g" * 64):
        with pytest.raises(fe.ConfigError, match="not a SHA-256 certificate fingerprint"):
            parse_fingerprint(bad, what="x")


def test_scaffolded_configs_pin_the_development_ca(tmp_path: Path) -> None:
    from fedlearn.config_a import load_config as load_a
    from fedlearn.config_b import load_config as load_b
    from fedlearn.scaffold import PartyData, write_node_configs

    data = tmp_path / "d.csv"
    data.write_text("id,y,x\n1,0,1\n")
    a_path, b_path, _, _ = write_node_configs(
        tmp_path, PartyData(data, "id", (), "y"), PartyData(data, "id", ())
    )
    ca = Certs(tmp_path / "certs")
    assert load_a(a_path).transport.pins == (("party-b", _fp(ca)),)
    assert load_b(b_path).transport.pins == (("party-a", _fp(ca)),)
    # A partner without a pin could never connect: refused at start-up, with the fix.
    b_path.write_text(b_path.read_text().replace('party-a = "sha256:', 'mallory = "sha256:'))
    with pytest.raises(fe.ConfigError, match="names no CA for 'party-a'"):
        load_b(b_path)
