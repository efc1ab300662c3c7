"""How much each party may have the other decrypt per batch, fixed when the session is aligned.

Every batch, each party decrypts the other's packed gradient ciphertexts and sends back the low
``b + 1`` bits of each slot (``packing.truncate``). A party that cheats can put anything it computes
from the other's ciphertexts in those slots, for instance several of the other's per-row secrets
(B's partial scores v, 21 bits each; A's slopes beta, 15 bits, or its residual terms, which carry
the labels). Nothing but a zero-knowledge proof can stop that, so both parties bound it instead:

- **columns per batch row** (issue 11 item 6): a party with f columns learns f exact linear
  equations in the other's s per-row values each batch, from its own gradient. Each party refuses a
  session in which either side has more than ``min_batch_rows / min_rows_per_column`` columns (B's
  policy, A's job: default 8 rows per column). Measured in docs/threat-model.md.
- **capacity**: the peer's ``value_count`` slots, each ``b + 1`` bits, must not be able to carry one
  of this party's per-row secrets for every row of the smallest batch:
  ``value_count * floor((b + 1) / secret_bits) < min_batch_rows``.

The peer's count is checked against both before anything is decrypted, then pinned for the session:
``check_peer_value_count``.
"""

from __future__ import annotations

from fedlearn.crypto.packing import PackingLayout
from fedlearn.errors import ConfigError, InvalidPeerData, PolicyViolation
from fedlearn.protocol.steps import SCORE_CLIP, SLOPE_FRAC_BITS

#: Default of B's [policy] and A's job [privacy] ``min_rows_per_column``.
MIN_ROWS_PER_COLUMN = 8


def min_batch_rows(train_rows: int, batch_size: int) -> int:
    """Rows in the smallest batch: batches are near-equal parts of ``max(1, m // batch_size)``."""
    return train_rows // max(1, train_rows // batch_size)


def feature_party_secret_bits(score_frac_bits: int) -> int:
    """Bits of B's per-row secret under B's key: v = clip(u_B) 2^F2 + K 2^F2 <= 2K 2^F2."""
    return ((2 * SCORE_CLIP) << score_frac_bits).bit_length()


def label_party_secret_bits() -> int:
    """Bits of A's narrowest per-row secret under A's key: beta = slope 2^16, |beta| <= 2^14."""
    return (1 << (SLOPE_FRAC_BITS - 2)).bit_length()


def secrets_per_slot(layout: PackingLayout, secret_bits: int) -> int:
    """How many ``secret_bits``-bit values one returned slot (``b + 1`` bits) can carry (at least 1)."""
    return max(1, layout.returned_bits // secret_bits)


def columns_allowed(batch_rows: int, min_rows_per_column: int) -> int:
    """Most feature columns a party may have with batches of ``batch_rows`` rows."""
    return batch_rows // min_rows_per_column


def check_own_columns(
    name: str, columns: int, batch_rows: int, min_rows_per_column: int, where: str
) -> None:
    """B refuses to train when its own columns exceed the per-row limit (it would learn labels).

    ``where`` names the setting, for the message. Raises ``PolicyViolation``.
    """
    allowed = columns_allowed(batch_rows, min_rows_per_column)
    if columns > allowed:
        raise PolicyViolation(
            f"{name} refuses the training job: batches of about {batch_rows} rows allow at most "
            f"{allowed} feature columns per party ({where} min_rows_per_column = "
            f"{min_rows_per_column}), and {name} has {columns}; raise batch_size to at least "
            f"{columns * min_rows_per_column} or use fewer columns",
            min_batch_size=columns * min_rows_per_column,
        )


def check_own_columns_a(columns: int, batch_rows: int, min_rows_per_column: int) -> None:
    """A's own check before any ciphertext: the job refuses a wide A (it would learn u_B)."""
    allowed = columns_allowed(batch_rows, min_rows_per_column)
    if columns > allowed:
        raise ConfigError(
            f"the job's batches of about {batch_rows} rows allow at most {allowed} feature "
            f"columns per party ([privacy] min_rows_per_column = {min_rows_per_column}), and A "
            f"has {columns} (after one-hot encoding, with the intercept): raise batch_size to at "
            f"least {columns * min_rows_per_column} or use fewer columns",
            min_batch_size=columns * min_rows_per_column,
        )


def peer_value_limit(
    batch_rows: int, layout: PackingLayout, secret_bits: int, min_rows_per_column: int
) -> int:
    """The largest ``value_count`` this party accepts from the peer (0: none at all).

    ``layout`` is the packing of the peer's values under this party's key, ``secret_bits`` the width
    of this party's per-row secrets the peer holds encrypted.
    """
    by_columns = columns_allowed(batch_rows, min_rows_per_column)
    by_capacity = (batch_rows - 1) // secrets_per_slot(layout, secret_bits)
    return max(0, min(by_columns, by_capacity))


def batch_rows_for(
    count: int, layout: PackingLayout, secret_bits: int, min_rows_per_column: int
) -> int:
    """The fewest rows per batch for which ``peer_value_limit`` accepts ``count`` values."""
    return max(count * min_rows_per_column, count * secrets_per_slot(layout, secret_bits) + 1)


def check_peer_value_count(count: int, *, limit: int, pinned: int) -> int:
    """The peer's ``value_count``, checked against the session's limit and its first value.

    Returns the count to pin. Raises ``InvalidPeerData`` (before anything is decrypted).
    """
    if not 1 <= count <= limit:
        raise InvalidPeerData(
            f"value_count {count} is outside 1..{limit}, what the session's batches allow"
        )
    if pinned and count != pinned:
        raise InvalidPeerData(f"value_count changed from {pinned} to {count} mid-session")
    return count
