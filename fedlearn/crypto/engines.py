"""Choosing the arithmetic behind the protocol: fedlearn's engine, or plain ``phe`` as a baseline.

Both kinds offer the same methods (``OwnKeyEngine`` and ``PeerKeyEngine``), so the protocol code is the
same for both and a benchmark can run identical work on each.
"""

from __future__ import annotations

from typing import Any

from fedlearn.crypto.executor import Executor
from fedlearn.crypto.keys import KeyPair
from fedlearn.errors import ConfigError

ENGINES = ("fast", "phe")


def own_key_engine(
    kind: str,
    keypair: KeyPair,
    *,
    obfuscation: str = "djn",
    executor: Executor | None = None,
    background: str = "thread",
) -> Any:
    """The engine for encrypting and decrypting under this party's own key.

    ``background`` is where the fast engine fills its obfuscator pool ("thread" or "process").
    """
    if kind == "fast":
        from fedlearn.crypto.paillier import OwnKeyEngine

        return OwnKeyEngine(
            keypair, obfuscation=obfuscation, executor=executor, background=background
        )
    if kind == "phe":
        from fedlearn.crypto.phe_engine import PheOwnKeyEngine

        return PheOwnKeyEngine(keypair)
    raise ConfigError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINES)}")


def peer_key_engine(
    kind: str, public_key: Any, *, djn_base: int | None, executor: Executor | None = None
) -> Any:
    """The engine for operations under the peer's public key."""
    if kind == "fast":
        from fedlearn.crypto.peer import PeerKeyEngine

        return PeerKeyEngine(public_key, djn_base=djn_base, executor=executor)
    if kind == "phe":
        from fedlearn.crypto.phe_engine import PhePeerKeyEngine

        return PhePeerKeyEngine(public_key)
    raise ConfigError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINES)}")
