"""Several masked values in one Paillier plaintext, so one decryption yields many gradient values.

Write b = value_bound_bits and k = mask_bits. A slot holds ``v + 2**b + R``: the signed value v
(``|v| < 2**b``), shifted to be non-negative, plus a mask R drawn uniformly from [0, 2**(b + k))
with :mod:`secrets`. The slot is then below ``2**(b + k + 1)``, and ``slot_bits = b + k + 2`` leaves
a spare top bit, so slots never carry into each other. ``slots * slot_bits < n.bit_length() - 1``,
so the packed integer stays below n/2 and decrypts exactly. The key holder learns only masked
values: R hides v statistically, up to ``2**-mask_bits``.

What the key holder sends back is not the whole slot but its low ``b + 1`` bits
(:func:`truncate`): ``(v + 2**b + R) mod 2**(b + 1)``. That is enough for the sender, who knows R,
to recover v (:func:`unmask_truncated`), it is exactly uniform (R mod 2**(b + 1) is uniform because
2**(b + 1) divides R's range), and it caps what a sender who cheats, by packing something other
than its masked values, can read back: ``b + 1`` bits per slot instead of ``b + k + 1``.

Slot order: the first value packed is the most significant slot (Horner order).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from fedlearn.errors import EncodingOverflow, InvalidPeerData


@dataclass(frozen=True)
class PackingLayout:
    """How masked values sit in one plaintext (all sizes in bits; ``slots`` per ciphertext)."""

    value_bound_bits: int
    mask_bits: int
    slot_bits: int
    slots: int

    @property
    def slot_value_bound(self) -> int:
        """Exclusive upper bound of an honest masked slot value."""
        return 1 << (self.value_bound_bits + self.mask_bits + 1)

    @property
    def slot_bytes(self) -> int:
        """Bytes per masked slot value on the wire."""
        return (self.slot_bits + 7) // 8

    @property
    def returned_bits(self) -> int:
        """Bits of a slot value as the key holder sends it back (:func:`truncate`)."""
        return self.value_bound_bits + 1

    @property
    def returned_bytes(self) -> int:
        """Bytes per returned slot value on the wire."""
        return (self.returned_bits + 7) // 8

    def ciphertext_count(self, count: int) -> int:
        """Packed ciphertexts needed for ``count`` values."""
        return -(-count // self.slots)


def packing_layout(n: int, *, value_bound_bits: int, mask_bits: int = 80) -> PackingLayout:
    """The densest layout for values with ``|v| < 2**value_bound_bits`` under modulus ``n``.

    Raises:
        ValueError: ``value_bound_bits < 1`` or ``mask_bits < 40`` (too weak to hide anything).
        EncodingOverflow: not even one slot fits in the modulus.
    """
    if value_bound_bits < 1:
        raise ValueError(f"value_bound_bits must be >= 1, got {value_bound_bits}")
    if mask_bits < 40:
        raise ValueError(f"mask_bits must be >= 40 for statistical hiding, got {mask_bits}")
    slot_bits = value_bound_bits + mask_bits + 2
    usable_bits = int(n).bit_length() - 2  # slots * slot_bits <= n.bit_length() - 2
    slots = usable_bits // slot_bits
    if slots < 1:
        raise EncodingOverflow(
            f"a {slot_bits}-bit slot ({value_bound_bits}-bit values + {mask_bits}-bit masks) "
            f"does not fit in a {int(n).bit_length()}-bit modulus"
        )
    return PackingLayout(value_bound_bits, mask_bits, slot_bits, slots)


def draw_masks(count: int, layout: PackingLayout) -> list[int]:
    """``count`` masks R, uniform in [0, 2**(value_bound_bits + mask_bits)), from :mod:`secrets`."""
    mask_width = layout.value_bound_bits + layout.mask_bits
    return [secrets.randbits(mask_width) for _ in range(count)]


def packed_offsets(masks: Sequence[int], layout: PackingLayout) -> list[int]:
    """The plaintexts to add to packed ciphertexts: ``2**value_bound_bits + R`` in each slot."""
    offset = 1 << layout.value_bound_bits
    packed = []
    for start in range(0, len(masks), layout.slots):
        accumulator = 0
        for mask in masks[start : start + layout.slots]:
            accumulator = (accumulator << layout.slot_bits) + offset + mask
        packed.append(accumulator)
    return packed


def unpack(plaintexts: Sequence[int], layout: PackingLayout, count: int) -> list[int]:
    """Key holder: decrypted packed residues -> the ``count`` masked slot values, in packing order.

    Raises:
        InvalidPeerData: the number of plaintexts does not match ``count``, or a plaintext or slot
            exceeds what an honest packing can produce.
    """
    if len(plaintexts) != layout.ciphertext_count(count):
        raise InvalidPeerData(
            f"{count} packed values need {layout.ciphertext_count(count)} ciphertexts, "
            f"got {len(plaintexts)}"
        )
    slot_mask = (1 << layout.slot_bits) - 1
    slot_bound = layout.slot_value_bound
    values: list[int] = []
    for index, plaintext in enumerate(plaintexts):
        in_this = min(layout.slots, count - index * layout.slots)
        plaintext = int(plaintext)
        if plaintext >> (in_this * layout.slot_bits):
            raise InvalidPeerData(f"packed plaintext {index} is larger than its {in_this} slots")
        slots = []
        for _ in range(in_this):
            slot = plaintext & slot_mask
            if slot >= slot_bound:
                raise InvalidPeerData(f"packed plaintext {index} has a slot beyond its bound")
            slots.append(slot)
            plaintext >>= layout.slot_bits
        values.extend(reversed(slots))
    return values


def unmask(masked_values: Sequence[int], masks: Sequence[int], layout: PackingLayout) -> list[int]:
    """Sender: masked slot values and its own masks -> the signed values.

    Raises:
        ValueError: the counts differ.
        EncodingOverflow: a recovered value has ``|v| >= 2**value_bound_bits`` (the value bound
            was too small, or the key holder returned wrong values).
    """
    if len(masked_values) != len(masks):
        raise ValueError(f"{len(masked_values)} masked values but {len(masks)} masks")
    offset = 1 << layout.value_bound_bits
    values = []
    for index, (masked, mask) in enumerate(zip(masked_values, masks, strict=True)):
        value = int(masked) - offset - int(mask)
        if not -offset < value < offset:
            raise EncodingOverflow(
                f"unmasked value {index} is outside the {layout.value_bound_bits}-bit bound; "
                "raise value_bound_bits or check what the key holder returned"
            )
        values.append(value)
    return values


def truncate(masked_values: Sequence[int], layout: PackingLayout) -> list[int]:
    """Key holder: the low ``returned_bits`` bits of each masked slot value, which is all it sends back."""
    keep = (1 << layout.returned_bits) - 1
    return [int(value) & keep for value in masked_values]


def unmask_truncated(
    returned: Sequence[int], masks: Sequence[int], layout: PackingLayout
) -> list[int]:
    """Sender: the key holder's truncated slot values and its own masks -> the signed values.

    ``(v + 2**b + R) mod 2**(b + 1)`` minus ``2**b + R``, mod ``2**(b + 1)``, read as a signed number
    in [-2**b, 2**b): v itself, since ``|v| < 2**b``. Any returned value decodes to some value in that
    range: a key holder that returns wrong values changes the gradient, it cannot provoke an error
    that depends on R (that would make the error an oracle for the mask).

    Raises:
        ValueError: the counts differ.
    """
    if len(returned) != len(masks):
        raise ValueError(f"{len(returned)} returned values but {len(masks)} masks")
    offset = 1 << layout.value_bound_bits
    modulus = offset << 1
    values = []
    for value, mask in zip(returned, masks, strict=True):
        residue = (int(value) - offset - int(mask)) % modulus
        values.append(residue - modulus if residue >= offset else residue)
    return values
