from __future__ import annotations

import random
import time

import gmpy2
import pytest

from fedlearn.crypto import OwnKeyEngine, ProcessExecutor
from fedlearn.crypto.matvec import FixedBaseTable, random_digits
from fedlearn.errors import InvalidPeerData


def _residues(n: int, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [0, 1, n - 1] + [rng.randrange(n) for _ in range(count)]


def test_encrypt_decrypt_round_trip(engine, keypair) -> None:
    plaintexts = _residues(keypair.public_key.n, 40, seed=1)
    ciphertexts = engine.encrypt(plaintexts)
    n_square = keypair.public_key.nsquare
    assert all(1 <= c < n_square for c in ciphertexts)
    assert engine.decrypt(ciphertexts) == plaintexts


def test_engine_ciphertexts_decrypt_with_phe(engine, keypair) -> None:
    plaintexts = _residues(keypair.public_key.n, 20, seed=2)
    ciphertexts = engine.encrypt(plaintexts)
    assert [keypair.private_key.raw_decrypt(int(c)) for c in ciphertexts] == plaintexts


def test_phe_ciphertexts_decrypt_with_engine(engine, keypair) -> None:
    plaintexts = _residues(keypair.public_key.n, 20, seed=3)
    ciphertexts = [keypair.public_key.raw_encrypt(m) for m in plaintexts]
    assert engine.decrypt(ciphertexts) == plaintexts


def test_djn_obfuscator_is_the_fixed_base_power(engine, keypair) -> None:
    # the obfuscator of a zero plaintext is h_s**r for some r; it must be an n-th residue, i.e.
    # decrypt to 0, and two encryptions of the same plaintext must differ
    first, second = engine.encrypt([0, 0])
    assert first != second
    assert engine.decrypt([first, second]) == [0, 0]
    assert engine.djn_base is not None
    assert engine.exponent_bits == keypair.public_key.n.bit_length() // 2


def test_fixed_base_table_matches_powmod() -> None:
    modulus = gmpy2.next_prime(2**200) * gmpy2.next_prime(2**180)
    table = FixedBaseTable(123456789, modulus, exponent_bits=100, window=7)
    rng = random.Random(4)
    for exponent in [0, 1, 2**100 - 1] + [rng.getrandbits(100) for _ in range(20)]:
        digits = [(exponent >> (7 * i)) & 127 for i in range(table.rows)]
        assert table.pow_digits(digits) == gmpy2.powmod(123456789, exponent, modulus)
    with pytest.raises(ValueError, match="window"):
        FixedBaseTable(3, modulus, exponent_bits=100, window=17)


def test_random_digits_cover_exactly_the_exponent_bits() -> None:
    digits = random_digits(400, exponent_bits=20, window=8)
    assert all(len(row) == 3 for row in digits)
    assert max(row[2] for row in digits) <= 15  # top digit holds only the 4 remaining bits
    assert max(row[0] for row in digits) > 200  # full digits use all 8 bits


def test_standard_obfuscation_round_trip(small_keypair) -> None:
    with OwnKeyEngine(small_keypair, obfuscation="standard") as standard:
        assert standard.djn_base is None
        plaintexts = _residues(small_keypair.public_key.n, 10, seed=5)
        ciphertexts = standard.encrypt(plaintexts)
        assert [small_keypair.private_key.raw_decrypt(int(c)) for c in ciphertexts] == plaintexts


def test_pool_is_filled_in_background_and_used(small_keypair) -> None:
    with OwnKeyEngine(small_keypair) as own:
        own.prefill(50)
        deadline = time.monotonic() + 20
        while own.pool_size() < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert own.pool_size() == 50
        plaintexts = _residues(small_keypair.public_key.n, 57, seed=6)  # 60: more than the pool
        assert own.decrypt(own.encrypt(plaintexts)) == plaintexts
        assert own.pool_size() == 0


def test_pool_target_is_kept_topped_up(small_keypair) -> None:
    with OwnKeyEngine(small_keypair, pool_target=20) as own:
        own.encrypt([1] * 20)
        deadline = time.monotonic() + 20
        while own.pool_size() < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert own.pool_size() == 20


def test_plaintext_outside_range_rejected(engine, keypair) -> None:
    with pytest.raises(ValueError, match="encode it first"):
        engine.encrypt([keypair.public_key.n])
    with pytest.raises(ValueError, match="encode it first"):
        engine.encrypt([-1])


@pytest.mark.parametrize("bad", [0, "n_square"])
def test_decrypt_refuses_out_of_range_ciphertexts(engine, keypair, bad) -> None:
    value = keypair.public_key.nsquare if bad == "n_square" else bad
    with pytest.raises(InvalidPeerData, match=r"outside \[1, n\^2\)"):
        engine.decrypt([value])


def test_unknown_obfuscation_rejected(small_keypair) -> None:
    with pytest.raises(ValueError, match="obfuscation"):
        OwnKeyEngine(small_keypair, obfuscation="none")


def test_process_executor_gives_the_same_plaintexts(small_keypair) -> None:
    with ProcessExecutor(2) as executor:
        own = OwnKeyEngine(small_keypair, executor=executor)
        plaintexts = _residues(small_keypair.public_key.n, 97, seed=7)
        ciphertexts = own.encrypt(plaintexts)  # 100 > 64: obfuscators computed on the workers
        assert len(set(ciphertexts)) == len(ciphertexts)
        assert own.decrypt(ciphertexts) == plaintexts
        assert [small_keypair.private_key.raw_decrypt(int(c)) for c in ciphertexts] == plaintexts
        own.close()


def test_pool_filled_by_a_helper_process(small_keypair) -> None:
    """``background="process"``: obfuscators come from a spawned process and still decrypt right."""
    own = OwnKeyEngine(small_keypair, background="process")
    try:
        own.prefill(300)
        deadline = time.monotonic() + 60
        while own.pool_size() < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert own.pool_size() >= 300
        plaintexts = _residues(small_keypair.public_key.n, 100, seed=9)
        ciphertexts = own.encrypt(plaintexts)
        assert own.pool_size() < 300  # taken from the pool
        assert own.decrypt(ciphertexts) == plaintexts
        assert len(set(ciphertexts)) == len(ciphertexts)
    finally:
        own.close()
    with pytest.raises(ValueError, match="background"):
        OwnKeyEngine(small_keypair, background="cluster")


def test_helper_process_exits_when_its_parent_is_killed(tmp_path) -> None:
    """A node killed with SIGKILL must not leave its obfuscator helper behind."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from fedlearn.crypto.keys import generate_keypair\n"
        "from fedlearn.crypto.paillier import OwnKeyEngine\n"
        "if __name__ == '__main__':\n"
        "    own = OwnKeyEngine(generate_keypair(512), background='process')\n"
        "    own.prefill(50)\n"
        "    while own.pool_size() < 50:\n"
        "        time.sleep(0.05)\n"
        "    pids = [own._helper.pid]\n"
        "    print(' '.join(map(str, pids)), flush=True)\n"
        "    time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    helpers = [int(pid) for pid in parent.stdout.readline().split()]
    assert helpers
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    alive = helpers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in helpers if _alive(pid)]
    assert not alive, f"helper processes {alive} outlived their parent"


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def test_closing_while_the_helper_computes_or_after_it_died_does_not_hang() -> None:
    """The helper may be killed at any moment (mid-chunk, mid-write): its pipe's other end is the
    child's alone, so the filler's read ends and ``close`` returns. A pool's worker killed
    mid-write left a part-message in its shared pipe, and ``close`` waited for ever (a node hung
    when a session ended). A helper that died on its own is replaced by this thread's work."""
    import os
    import signal

    from fedlearn.crypto.keys import generate_keypair
    from fedlearn.crypto.paillier import OwnKeyEngine

    keypair = generate_keypair(1024)
    for _ in range(3):  # at different points of its work
        own = OwnKeyEngine(keypair, background="process")
        own.prefill(5000)
        time.sleep(0.3)
        started = time.monotonic()
        own.close()
        assert time.monotonic() - started < 15
    own = OwnKeyEngine(keypair, background="process")
    own.prefill(64)
    deadline = time.monotonic() + 30
    while own.pool_size() < 64 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert own._helper is not None and own._helper.pid is not None
    os.kill(own._helper.pid, signal.SIGKILL)
    own.prefill(200)  # refilled in the engine's own thread now
    deadline = time.monotonic() + 30
    while own.pool_size() < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert own.pool_size() >= 200
    ciphertexts = own.encrypt([3, 5])
    assert own.decrypt(ciphertexts) == [3, 5]
    started = time.monotonic()
    own.close()
    assert time.monotonic() - started < 15
