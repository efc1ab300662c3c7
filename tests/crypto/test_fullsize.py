"""The engine at the production key size (2048 bits). Slow: run with ``-m fullsize``."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.crypto import (
    FixedPointCodec,
    OwnKeyEngine,
    PeerKeyEngine,
    generate_keypair,
    packing_layout,
    unmask,
    unpack,
)

pytestmark = pytest.mark.fullsize


def test_2048_bit_round_trip_matvec_and_packing() -> None:
    keypair = generate_keypair(2048)
    with OwnKeyEngine(keypair) as own:
        assert own.exponent_bits == 1024  # DJN exponents are never shortened
        codec = FixedPointCodec(keypair.public_key.n)
        rng = np.random.default_rng(20)
        residual = np.rint(rng.normal(size=64) * 2.0**16).astype(np.int64)
        ciphertexts = own.encrypt(codec.encode_int(residual))
        assert [keypair.private_key.raw_decrypt(int(c)) for c in ciphertexts[:4]] == (
            codec.encode_int(residual[:4])
        )
        x = rng.integers(-(2**15) + 1, 2**15, (64, 20)).astype(np.int16)
        peer = PeerKeyEngine(keypair.public_key, djn_base=own.djn_base)
        encrypted = peer.matvec_t(x, ciphertexts)
        expected = [
            sum(
                int(a) * b
                for a, b in zip(
                    column, codec.decode_int(codec.encode_int(residual), bound=2**40), strict=True
                )
            )
            for column in x.T
        ]
        layout = packing_layout(keypair.public_key.n, value_bound_bits=48)
        packed, masks = peer.pack_masked(encrypted, layout)
        assert len(packed) == 2
        assert unmask(unpack(own.decrypt(packed), layout, 20), masks, layout) == expected
