"""The key holder's engine: encryption under its own key, and CRT decryption.

With g = n + 1, ``E(m) = (1 + m*n) * s mod n^2`` where s is an *obfuscator*, a random n-th residue.
Making s is all the cost of encryption, and the key holder, knowing p and q, makes it cheaply:

* ``obfuscation="djn"`` (default; as SecretFlow HEU's ZPaillier): ``s = h_s**r`` with the fixed base
  ``h_s = h**n mod n^2`` (h = -y^2 mod n for random y) and r uniform with ``n_bits / 2`` bits (1024
  for a 2048-bit key; never shorter). h_s is raised to r mod p^2 and mod q^2 separately with full
  window tables (:class:`~fedlearn.crypto.matvec.FixedBaseTable`) and the halves joined by CRT.
  Security rests on the DJN assumption (see docs/security.md).
* ``obfuscation="standard"``: textbook ``s = r**n`` with r uniform in Z_n^*, via CRT.

Obfuscators do not depend on the message, so a background thread fills a pool ahead of need
(:meth:`OwnKeyEngine.prefill`); an online encryption from the pool is one multiplication mod n and
one by n. Every ciphertext this engine returns is obfuscated: there is no unobfuscated fast path.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection
import os
import secrets
import threading
from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from fedlearn.crypto.executor import Executor, SerialExecutor, exit_with_parent, split_evenly
from fedlearn.crypto.keys import KeyPair
from fedlearn.crypto.matvec import FixedBaseTable, random_digits
from fedlearn.errors import InvalidPeerData

OBFUSCATIONS = ("djn", "standard")
BACKGROUNDS = ("thread", "process", "executor")

#: Window bits of the DJN tables for keys of 2048 bits or more: 94 products per 1024-bit exponent
#: (window 10: 103, 9% more) for tables of 94 x 2,048 residues per prime (about 120 MB per process
#: at 2048 bits, twice window 10's: 118 MB on the C kernel's IFMA path, 94 MB on its mpn path).
DJN_TABLE_WINDOW = 11
#: Obfuscators computed per step of the background filler (it checks for ``close`` in between).
_FILL_CHUNK = 32
#: Obfuscators per request to the background process (amortises the pickling of the results).
_PROCESS_FILL_CHUNK = 256


class OwnKeyEngine:
    """Encrypt and decrypt under this party's own key pair.

    Args:
        keypair: this party's keys.
        obfuscation: ``"djn"`` (fixed-base obfuscators, fast) or ``"standard"`` (r**n).
        executor: where large synchronous batches of obfuscators and decryptions run. The private
            factors are sent to its workers, so give it only a local pool, never a remote cluster.
        pool_target: keep this many obfuscators ready in the background (0: only on
            :meth:`prefill`).
        table_window: window bits of the DJN tables (default ``DJN_TABLE_WINDOW``, 11, for keys
            of 2048 bits or more, 8 below; each step up doubles the memory and saves a few
            multiplications).
        background: where the pool is filled: ``"thread"`` (in this process: it competes with
            this process's own work for the interpreter), ``"process"`` (a separate local process
            that gets the private factors, so the operating system can run it on a core this
            process is not using, e.g. while the peer's node waits) or ``"executor"`` (chunks on
            every worker of ``executor``, e.g. a Ray cluster's actors, which keep the DJN tables).
            A node uses ``"process"`` with a local pool and ``"executor"`` with Ray.
    """

    def __init__(
        self,
        keypair: KeyPair,
        *,
        obfuscation: str = "djn",
        executor: Executor | None = None,
        pool_target: int = 0,
        table_window: int | None = None,
        background: str = "thread",
    ) -> None:
        if obfuscation not in OBFUSCATIONS:
            raise ValueError(f"obfuscation must be one of {OBFUSCATIONS}, got {obfuscation!r}")
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
        if pool_target < 0:
            raise ValueError(f"pool_target must be >= 0, got {pool_target}")
        self.public_key = keypair.public_key
        self.obfuscation = obfuscation
        self.executor: Executor = executor or SerialExecutor()
        self.pool_target = pool_target
        self.background = background
        self.n = mpz(keypair.public_key.n)
        self.n_square = self.n * self.n
        self.n_bits = int(self.n).bit_length()
        self.secret = _SecretParts.from_keypair(keypair)
        self.exponent_bits = self.n_bits // 2
        self.table_window = table_window or (DJN_TABLE_WINDOW if self.n_bits >= 2048 else 8)
        self.djn_base: int | None = None
        self._tables: tuple[FixedBaseTable, FixedBaseTable] | None = None
        if obfuscation == "djn":
            y = secrets.randbelow(int(self.n) - 2) + 2
            h = (-y * y) % self.n
            djn_base = gmpy2.powmod(h, self.n, self.n_square)
            self.djn_base = int(djn_base)
            self._tables = self.secret.djn_tables(djn_base, self.exponent_bits, self.table_window)
        # Pool of (s, s mod n); deque appends and pops are atomic, so the filler needs no lock.
        self._pool: collections.deque[tuple[mpz, mpz]] = collections.deque()
        self._fill_to = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._filler: threading.Thread | None = None
        self._helper: _HelperProcess | None = None
        if background == "process":
            self._helper = _HelperProcess()
        if pool_target:
            self.prefill(pool_target)

    # -- obfuscators -------------------------------------------------------------------------

    def _fresh_obfuscators(self, count: int) -> list[mpz]:
        """``count`` new obfuscators, computed in this thread."""
        if self._tables is None:
            return [self.secret.standard_obfuscator() for _ in range(count)]
        digits = random_digits(count, self.exponent_bits, self.table_window)
        return self.secret.djn_obfuscators(self._tables, digits)

    def _obfuscators_now(self, count: int) -> list[mpz]:
        """``count`` new obfuscators, spread over the executor's workers when it has several."""
        if count < 64 or self.executor.workers <= 1:
            return self._fresh_obfuscators(count)
        return self._obfuscators_on_executor(count)

    def _obfuscators_on_executor(self, count: int) -> list[mpz]:
        """``count`` obfuscators in one chunk per worker (the workers keep the DJN tables)."""
        tasks = [
            (self.secret, self.djn_base, self.exponent_bits, self.table_window, len(part))
            for part in split_evenly(count, self.executor.workers)
        ]
        return [s for chunk in self.executor.map(_obfuscator_task, tasks) for s in chunk]

    def prefill(self, count: int) -> None:
        """Have at least ``count`` obfuscators ready, computed in a background thread.

        Returns at once. Call it while this party would otherwise wait (for the peer, for I/O);
        the thread competes for the interpreter with compute-bound work in this process.
        """
        with self._lock:
            self._fill_to = max(self._fill_to, count)
            self._start_filler_locked()

    def pool_size(self) -> int:
        """Obfuscators ready now."""
        return len(self._pool)

    def _start_filler_locked(self) -> None:
        if self._stop.is_set() or len(self._pool) >= self._fill_to:
            return
        if self._filler is None or not self._filler.is_alive():
            self._filler = threading.Thread(target=self._fill, name="obfuscator-pool", daemon=True)
            self._filler.start()

    def _fill(self) -> None:
        while not self._stop.is_set():
            missing = self._fill_to - len(self._pool)
            if missing <= 0:
                return
            for s in self._background_obfuscators(missing):
                self._pool.append((s, s % self.n))

    def _background_obfuscators(self, missing: int) -> list[mpz]:
        """A chunk of obfuscators for the pool: from the helper process, the executor's workers,
        or this thread."""
        if self.background == "executor":
            count = min(missing, _PROCESS_FILL_CHUNK * self.executor.workers)
            try:
                return self._obfuscators_on_executor(count)
            except Exception:
                if self._stop.is_set():
                    return []  # shutting down: the executor may be gone
                raise
        if self._helper is None:
            return self._fresh_obfuscators(min(missing, _FILL_CHUNK))
        count = min(missing, _PROCESS_FILL_CHUNK)
        task = (self.secret, self.djn_base, self.exponent_bits, self.table_window, count)
        made = self._helper.run(task, self._stop)
        if made or self._stop.is_set():
            return made  # [] when shutting down
        # The helper died (killed from outside, out of memory): make them here rather than spin.
        return self._fresh_obfuscators(min(missing, _FILL_CHUNK))

    def _take_obfuscators(self, count: int) -> list[tuple[mpz, mpz]]:
        taken: list[tuple[mpz, mpz]] = []
        pool = self._pool
        while len(taken) < count:
            try:
                taken.append(pool.popleft())
            except IndexError:
                break
        if len(taken) < count:
            taken.extend((s, s % self.n) for s in self._obfuscators_now(count - len(taken)))
        with self._lock:
            self._fill_to = max(self.pool_target, self._fill_to - count)
            self._start_filler_locked()
        return taken

    # -- encrypt / decrypt -------------------------------------------------------------------

    def encrypt(self, plaintexts: Sequence[int]) -> list[mpz]:
        """Encrypt residues in [0, n) under this party's key; one ciphertext in [1, n^2) each.

        Uses pooled obfuscators first and computes the rest now.

        Raises:
            ValueError: a plaintext is outside [0, n) (encode it with the codec first).
        """
        n, n_square = self.n, self.n_square
        messages = [mpz(m) for m in plaintexts]
        for index, message in enumerate(messages):
            if not 0 <= message < n:
                raise ValueError(f"plaintext {index} is outside [0, n); encode it first")
        ciphertexts = []
        for message, (s, s_mod_n) in zip(
            messages, self._take_obfuscators(len(messages)), strict=True
        ):
            # (1 + m n) s = s + n (m s mod n)  (mod n^2)
            ciphertext = s + n * (message * s_mod_n % n)
            ciphertexts.append(ciphertext - n_square if ciphertext >= n_square else ciphertext)
        return ciphertexts

    def decrypt(self, ciphertexts: Sequence[object]) -> list[int]:
        """Decrypt to residues in [0, n) by CRT (two half-size exponentiations each).

        Raises:
            InvalidPeerData: a ciphertext is outside [1, n^2).
        """
        values = [mpz(c) for c in ciphertexts]
        for index, value in enumerate(values):
            if not 1 <= value < self.n_square:
                raise InvalidPeerData(f"ciphertext {index} is outside [1, n^2)")
        if len(values) < 16 or self.executor.workers <= 1:
            return self.secret.decrypt(values)
        parts = split_evenly(len(values), self.executor.workers)
        tasks = [(self.secret, values[part.start : part.stop]) for part in parts]
        return [m for chunk in self.executor.map(_decrypt_task, tasks) for m in chunk]

    def close(self) -> None:
        """Stop the background filler and drop the pool."""
        self._stop.set()
        if self._helper is not None:
            # The helper holds nothing but obfuscators being made: end it now rather than wait for
            # its current chunk (seconds under load, and its DJN tables at first), so a node that
            # is told to stop stops. The filler's read then ends (EOF) and the filler ends.
            self._helper.stop()
        filler = self._filler
        if filler is not None:
            filler.join()
        if self._helper is not None:
            self._helper.close()
        self._pool.clear()

    def __enter__(self) -> OwnKeyEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SecretParts:
    """p, q and the CRT constants: the arithmetic that needs the private key (picklable)."""

    def __init__(self, p: int, q: int) -> None:
        self.p, self.q = mpz(p), mpz(q)
        self.n = self.p * self.q
        self.p_square, self.q_square = self.p * self.p, self.q * self.q
        self.p_square_inverse = gmpy2.invert(self.p_square, self.q_square)
        self.p_inverse = gmpy2.invert(self.p, self.q)
        g = self.n + 1
        self.hp = gmpy2.invert(self._l(gmpy2.powmod(g, self.p - 1, self.p_square), self.p), self.p)
        self.hq = gmpy2.invert(self._l(gmpy2.powmod(g, self.q - 1, self.q_square), self.q), self.q)

    @classmethod
    def from_keypair(cls, keypair: KeyPair) -> _SecretParts:
        return cls(keypair.private_key.p, keypair.private_key.q)

    @staticmethod
    def _l(x: mpz, prime: mpz) -> mpz:
        return (x - 1) // prime

    def crt(self, mod_p_square: mpz, mod_q_square: mpz) -> mpz:
        """The residue mod n^2 that is ``mod_p_square`` mod p^2 and ``mod_q_square`` mod q^2."""
        difference = (mod_q_square - mod_p_square) * self.p_square_inverse % self.q_square
        return mod_p_square + self.p_square * difference

    def djn_tables(
        self, djn_base: mpz, exponent_bits: int, window: int
    ) -> tuple[FixedBaseTable, FixedBaseTable]:
        return (
            FixedBaseTable(djn_base, self.p_square, exponent_bits=exponent_bits, window=window),
            FixedBaseTable(djn_base, self.q_square, exponent_bits=exponent_bits, window=window),
        )

    def djn_obfuscators(
        self, tables: tuple[FixedBaseTable, FixedBaseTable], digits: np.ndarray
    ) -> list[mpz]:
        """``h_s**r mod n^2`` for each row of window digits of r: the two halves, joined by CRT."""
        table_p, table_q = tables
        halves = zip(table_p.pow_many(digits), table_q.pow_many(digits), strict=True)
        return [self.crt(mod_p_square, mod_q_square) for mod_p_square, mod_q_square in halves]

    def standard_obfuscator(self) -> mpz:
        """``r**n mod n^2`` for r uniform in [1, n), computed mod p^2 and q^2."""
        r = mpz(secrets.randbelow(int(self.n) - 1) + 1)
        exponent_p = self.n % (self.p * (self.p - 1))
        exponent_q = self.n % (self.q * (self.q - 1))
        return self.crt(
            gmpy2.powmod(r, exponent_p, self.p_square), gmpy2.powmod(r, exponent_q, self.q_square)
        )

    def decrypt(self, ciphertexts: Sequence[mpz]) -> list[int]:
        p, q = self.p, self.q
        plaintexts = []
        for ciphertext in ciphertexts:
            m_p = self._l(gmpy2.powmod(ciphertext, p - 1, self.p_square), p) * self.hp % p
            m_q = self._l(gmpy2.powmod(ciphertext, q - 1, self.q_square), q) * self.hq % q
            plaintexts.append(int(m_p + p * ((m_q - m_p) * self.p_inverse % q)))
        return plaintexts


#: Worker-side DJN tables, keyed by (n, base, window): built once per worker process (a pool's
#: process or a Ray actor) and kept for the next tasks; at most ``_WORKER_TABLE_KEYS`` keys (~60 MB
#: each at 2048 bits), the least recently used dropped first.
_WORKER_TABLES: collections.OrderedDict[
    tuple[int, int, int], tuple[FixedBaseTable, FixedBaseTable]
] = collections.OrderedDict()
#: Two keys: a worker may serve two sessions (or both parties, in a test) in turn without
#: rebuilding its tables at every switch.
_WORKER_TABLE_KEYS = 2


class _HelperProcess:
    """One spawned process that computes chunks of obfuscators for an engine's background filler.

    Not a ``ProcessPoolExecutor``: a pool's worker killed while it writes its result leaves a part
    of a message in the pool's shared result pipe, whose other end the parent also holds, so the
    pool's reader waits for the rest forever, with the filler, ``close`` and the interpreter's exit
    behind it (a node that hung when a session ended, seen by a re-check on 3 December). Here the
    pipe's other end is held by the child alone: once the child is gone, every read ends (EOF),
    so ``stop`` may kill it at any moment. "spawn": a fresh interpreter, never a fork of a process
    that runs gRPC threads. The child also leaves when this process dies (``exit_with_parent``).
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe(duplex=True)
        self._process = context.Process(
            target=_helper_main,
            args=(child, os.getpid()),
            name="obfuscator-helper",
            daemon=True,
        )
        self._process.start()
        child.close()  # the child's end lives in the child only: its death is our EOF

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def run(
        self, task: tuple[_SecretParts, int | None, int, int, int], stop: threading.Event
    ) -> list[mpz]:
        """The task's obfuscators; [] once ``stop`` is set or the helper is gone."""
        try:
            self._connection.send(task)
            while not self._connection.poll(0.2):
                if stop.is_set():
                    return []
            result: list[mpz] = self._connection.recv()
            return result
        except (EOFError, OSError):
            return []

    def stop(self) -> None:
        """Kill the helper now (whatever it is doing); a pending ``run`` returns []."""
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=10)

    def close(self) -> None:
        self.stop()
        self._connection.close()


def _helper_main(connection: multiprocessing.connection.Connection, parent_pid: int) -> None:
    """The helper process: answer each task with its obfuscators until the pipe closes."""
    exit_with_parent(parent_pid)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        connection.send(_obfuscator_task(task))


def _obfuscator_task(task: tuple[_SecretParts, int | None, int, int, int]) -> list[mpz]:
    secret, djn_base, exponent_bits, window, count = task
    if djn_base is None:
        return [secret.standard_obfuscator() for _ in range(count)]
    key = (int(secret.n), djn_base, window)
    if key in _WORKER_TABLES:
        _WORKER_TABLES.move_to_end(key)
    else:
        while len(_WORKER_TABLES) >= _WORKER_TABLE_KEYS:
            _WORKER_TABLES.popitem(last=False)
        _WORKER_TABLES[key] = secret.djn_tables(mpz(djn_base), exponent_bits, window)
    digits = random_digits(count, exponent_bits, window)
    return secret.djn_obfuscators(_WORKER_TABLES[key], digits)


def _decrypt_task(task: tuple[_SecretParts, list[mpz]]) -> list[int]:
    secret, ciphertexts = task
    return secret.decrypt(ciphertexts)
