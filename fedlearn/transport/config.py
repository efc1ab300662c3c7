"""What a node's config says about its transport, and the start-up checks on it.

A node builds one ``TransportConfig`` from its TOML file (paths already resolved relative to that
file) and calls ``validate`` before it listens or dials; ``build_server`` and ``build_channel`` call
it too. Every error names the config file and key and says what to change, e.g.
``a.toml: [tls] cert: file certs/x.pem does not exist``.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path

from fedlearn.errors import ConfigError
from fedlearn.transport import tls

_SCHEMES = ("dns:///", "dns:", "ipv4:", "ipv6:")


@dataclass(frozen=True)
class TransportConfig:
    """TLS files and defaults for one node.

    ``ca`` is the CA that signs the *peer's* certificate (the server requires client certificates
    from it; the client verifies the server against it). ``cert``/``key`` are this node's own PEM
    certificate and unencrypted private key, used both as server and as client certificate.
    ``insecure`` selects plaintext, allowed only on loopback and only without TLS files.
    ``deadline_s`` is the default per-call deadline, in seconds. ``pins`` pairs each partner's
    certificate name with the fingerprint (``tls.fingerprint``) of the one CA of ``ca`` allowed to
    issue that partner's certificate (``[tls.pins]``; see ``fedlearn.transport.tls``).
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False
    deadline_s: float = 60.0
    pins: tuple[tuple[str, str], ...] = ()

    def pin_for(self, name: str) -> str | None:
        """The CA fingerprint pinned for the partner ``name``, or None."""
        return dict(self.pins).get(name)

    def validate(self, address: str, *, source: str, section: str = "tls") -> None:
        """Check the settings for listening on or dialling ``address``; raise ``ConfigError``.

        ``source`` names the config file (``"b.toml"``) and ``section`` the TOML table holding the
        TLS keys; both only shape the messages. Checks, in order: the deadline is a positive number;
        insecure is not combined with TLS files and is used only on a loopback address; otherwise
        ``ca``, ``cert`` and ``key`` are all set, exist, are readable PEM, the certificate is within
        its validity period, and the key belongs to the certificate; every pin names a CA of the
        bundle, and a bundle of more than one CA comes with pins.
        """
        where = f"{source}: [{section}]" if source else f"[{section}]"
        if not (isinstance(self.deadline_s, int | float) and math.isfinite(self.deadline_s)) or (
            self.deadline_s <= 0
        ):
            raise ConfigError(
                f"{where} deadline_s: expected a positive number of seconds, "
                f"got {self.deadline_s!r}"
            )
        given = [name for name in ("ca", "cert", "key") if getattr(self, name) is not None]
        if self.insecure:
            if given:
                raise ConfigError(
                    f"{where} insecure = true contradicts {', '.join(given)} being set: remove "
                    f"{', '.join(given)} for plaintext on loopback, or set insecure = false for TLS"
                )
            if self.pins:
                raise ConfigError(
                    f"{where} insecure = true contradicts [tls.pins]: pins need TLS; remove them "
                    "for plaintext on loopback"
                )
            if not is_loopback_address(address):
                raise ConfigError(
                    f"{where} insecure = true is allowed only on a loopback address, but the "
                    f"address is {address!r}: set insecure = false or listen on 127.0.0.1"
                )
            return
        for name in ("ca", "cert", "key"):
            if getattr(self, name) is None:
                raise ConfigError(
                    f"{where} {name}: not set; mutual TLS needs ca, cert and key (make development "
                    "ones with `fedlearn certs`), or set insecure = true on a loopback address"
                )
        assert self.ca is not None and self.cert is not None and self.key is not None
        ca_pem = _read(self.ca, f"{where} ca")
        cert_pem = _read(self.cert, f"{where} cert")
        key_pem = _read(self.key, f"{where} key")
        bundle = tls.check_ca_bundle(ca_pem, what=f"{where} ca: {self.ca}")
        for name, pin in self.pins:
            tls.pinned_ca(bundle, pin, what=f"{source or 'config'}: [{section}.pins] {name}")
        if len(bundle) > 1 and not self.pins:
            held = ", ".join(tls.fingerprint(cert) for cert in bundle)
            raise ConfigError(
                f"{where} ca: {self.ca} holds {len(bundle)} CAs, and any of them could issue a "
                f"certificate carrying a partner's name: pin the CA of each partner in "
                f'[{section}.pins], e.g. party-a = "sha256:..." (the bundle holds {held})'
            )
        cert = tls.check_certificate(cert_pem, what=f"{where} cert: {self.cert}")
        tls.check_key_pair(cert, key_pem, what=f"{where} key: {self.key}", cert_path=self.cert)


def _read(path: Path, what: str) -> bytes:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what}: file {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{what}: {path} is not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc


def address_host(address: str) -> str:
    """The host part of a gRPC address: ``"[::1]:50051"`` -> ``"::1"``, ``"localhost:0"`` ->
    ``"localhost"``, ``"dns:///node-b:443"`` -> ``"node-b"``. A ``unix:`` address gives ``"unix"``.
    """
    rest = address.strip()
    if rest.startswith(("unix:", "unix-abstract:")):
        return "unix"
    for scheme in _SCHEMES:
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    if rest.startswith("["):
        end = rest.find("]")
        return rest[1:end] if end > 0 else rest
    if rest.count(":") == 1:
        return rest.rsplit(":", 1)[0]
    return rest  # a bare host, or a bare IPv6 address without a port


def is_loopback_address(address: str) -> bool:
    """True when ``address`` can only be reached from this machine: 127.0.0.0/8, ``::1`` (also
    IPv4-mapped), ``localhost``, or a unix socket. ``0.0.0.0``, ``[::]`` and an empty host are not.
    """
    host = address_host(address)
    if host == "unix" or host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
