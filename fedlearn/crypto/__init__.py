"""Paillier engine: keys, fixed-point codec, own-key encryption, peer-key kernels, packing, wire.

The training protocol uses this package through the names re-exported here. See docs/security.md for
the assumptions and docs/performance.md for what each operation costs.
"""

from fedlearn.crypto.codec import FixedPointCodec
from fedlearn.crypto.executor import (
    Executor,
    ProcessExecutor,
    SerialExecutor,
    make_executor,
)
from fedlearn.crypto.keys import (
    KeyPair,
    check_fingerprint,
    generate_keypair,
    key_fingerprint,
    public_key_from_bytes,
    public_key_to_bytes,
)
from fedlearn.crypto.packing import PackingLayout, packing_layout, unmask, unpack
from fedlearn.crypto.paillier import OwnKeyEngine
from fedlearn.crypto.peer import PeerKeyEngine
from fedlearn.crypto.wire import (
    ciphertext_width,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    ints_from_bytes,
    ints_to_bytes,
)

__all__ = [
    "Executor",
    "FixedPointCodec",
    "KeyPair",
    "OwnKeyEngine",
    "PackingLayout",
    "PeerKeyEngine",
    "ProcessExecutor",
    "SerialExecutor",
    "check_fingerprint",
    "ciphertext_width",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "generate_keypair",
    "ints_from_bytes",
    "ints_to_bytes",
    "key_fingerprint",
    "make_executor",
    "packing_layout",
    "public_key_from_bytes",
    "public_key_to_bytes",
    "unmask",
    "unpack",
]
