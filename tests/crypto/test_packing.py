from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.crypto import packing_layout, unmask, unpack
from fedlearn.crypto.packing import draw_masks, packed_offsets, truncate, unmask_truncated
from fedlearn.errors import EncodingOverflow, InvalidPeerData


def test_layout_for_a_2048_bit_key() -> None:
    layout = packing_layout(2**2047 + 1, value_bound_bits=48)
    assert layout.slot_bits == 48 + 80 + 2
    assert layout.slots == 15
    assert layout.slots * layout.slot_bits < 2048 - 1


def test_layout_refuses_when_no_slot_fits() -> None:
    with pytest.raises(EncodingOverflow, match="does not fit"):
        packing_layout(2**127 + 1, value_bound_bits=60)
    with pytest.raises(ValueError, match="mask_bits"):
        packing_layout(2**2047 + 1, value_bound_bits=8, mask_bits=20)


def _pack_plain(values: list[int], masks: list[int], layout, n: int) -> list[int]:
    """What the key holder decrypts: Horner-packed values plus the packed offsets, mod n."""
    plain = []
    for start in range(0, len(values), layout.slots):
        accumulator = 0
        for value in values[start : start + layout.slots]:
            accumulator = (accumulator << layout.slot_bits) + value
        plain.append(accumulator % n)
    return [(p + o) % n for p, o in zip(plain, packed_offsets(masks, layout), strict=True)]


N = (2**521 - 1) * (2**607 - 1)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=64),
    st.data(),
)
def test_pack_unpack_unmask_recovers_signed_values(bound_bits: int, data) -> None:
    layout = packing_layout(N, value_bound_bits=bound_bits)
    limit = 2**bound_bits - 1
    values = data.draw(st.lists(st.integers(-limit, limit), min_size=1, max_size=40))
    masks = draw_masks(len(values), layout)
    masked = unpack(_pack_plain(values, masks, layout, N), layout, len(values))
    assert all(0 <= m < layout.slot_value_bound for m in masked)
    assert unmask(masked, masks, layout) == values


def test_values_at_the_bound_and_extreme_masks() -> None:
    layout = packing_layout(N, value_bound_bits=20)
    limit = 2**20 - 1
    values = [limit, -limit, 0, limit, -limit]
    top = 2 ** (20 + 80) - 1
    masks = [top, top, 0, 0, top]
    masked = unpack(_pack_plain(values, masks, layout, N), layout, len(values))
    assert unmask(masked, masks, layout) == values


def test_out_of_bound_value_detected_on_unmask() -> None:
    layout = packing_layout(N, value_bound_bits=20)
    masks = [0, 5]
    masked = unpack(_pack_plain([2**20, 3], masks, layout, N), layout, 2)
    with pytest.raises(EncodingOverflow, match="20-bit bound"):
        unmask(masked, masks, layout)


def test_unpack_refuses_malformed_plaintexts() -> None:
    layout = packing_layout(N, value_bound_bits=20)
    with pytest.raises(InvalidPeerData, match="need 1 ciphertexts, got 2"):
        unpack([1, 2], layout, 3)
    with pytest.raises(InvalidPeerData, match="larger than its 1 slots"):
        unpack([1 << layout.slot_bits], layout, 1)
    with pytest.raises(InvalidPeerData, match="slot beyond its bound"):
        unpack([layout.slot_value_bound], layout, 1)


def test_masks_are_full_width_and_unpredictable() -> None:
    layout = packing_layout(N, value_bound_bits=16)
    masks = draw_masks(200, layout)
    assert max(masks).bit_length() == 16 + 80
    assert len(set(masks)) == 200


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=64), st.data())
def test_truncated_slots_recover_the_values_and_are_uniform_below_2_b_plus_1(
    bound_bits: int, data
) -> None:
    """The key holder returns the low b + 1 bits; the sender recovers v modulo 2^(b + 1)."""
    layout = packing_layout(N, value_bound_bits=bound_bits)
    limit = 2**bound_bits - 1
    values = data.draw(st.lists(st.integers(-limit, limit), min_size=1, max_size=20))
    masks = draw_masks(len(values), layout)
    returned = truncate(unpack(_pack_plain(values, masks, layout, N), layout, len(values)), layout)
    assert all(0 <= r < 1 << layout.returned_bits for r in returned)
    assert unmask_truncated(returned, masks, layout) == values


def test_truncated_slots_hide_the_value() -> None:
    """For a fixed value, the returned low bits over fresh masks spread over all of [0, 2^(b+1))."""
    layout = packing_layout(N, value_bound_bits=3)
    seen = set()
    for _ in range(400):
        masks = draw_masks(1, layout)
        seen.update(truncate(unpack(_pack_plain([5], masks, layout, N), layout, 1), layout))
    assert seen == set(range(1 << layout.returned_bits))
