/* Fixed-base exponentiation by a full window table, in Montgomery form on GMP's mpn layer.
 *
 * The kernel behind fedlearn.crypto.matvec.FixedBaseTable when it is built (an optional extension:
 * without a C compiler or GMP's headers the pure-Python table runs, with the same results).
 * A DJN obfuscator is base**r mod p^2 and mod q^2 for a fresh 1,024-bit r: 94 products of table
 * entries per prime at window 11. From Python each product is a gmpy2 multiplication and a
 * division (mpz_mul + mpz_mod, a new object each); here it is one Montgomery product on limbs
 * (mpn_mul_n, then REDC by mpn_addmul_1), with no allocation and without the interpreter's lock,
 * so a filler thread runs beside the party's own Python work.
 *
 * Table(modulus, base, rows, window): modulus and base as little-endian bytes (the modulus odd and
 * > 1). Row i holds base**(j * 2**(window * i)) for j < 2**window, as a Montgomery residue
 * (x * 2**(64 L) mod modulus, L the modulus's limbs); ``rows * 2**window * L * 8`` bytes in all.
 * Table.pow_many(digits): digits is a C-contiguous buffer of uint16, ``rows`` per exponent; returns
 * bytes holding, per exponent, prod_i table[i][digit_i] mod modulus as L little-endian 64-bit limbs,
 * fully reduced (1 for an all-zero exponent).
 *
 * Only public GMP functions are used (mpn_mul_n, mpn_addmul_1, mpn_add_n, mpn_sub_n, mpn_cmp and
 * mpz for the set-up), so any GMP >= 5 serves.
 *
 * On x86-64 processors with AVX-512 IFMA (checked when the module loads), the products run on
 * eight 52-bit digit lanes at a time instead (Gueron and Krasnov's "almost Montgomery
 * multiplication", vpmadd52luq/vpmadd52huq): residues are 8 * V digits of 52 bits with
 * R = 2^(416 V) > 4 m, products stay below 2 m and are reduced fully once, at the end. The same
 * numbers come out; Table(..., vector=False) keeps the mpn path (tests compare the two).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <gmp.h>
#include <stdint.h>
#include <string.h>

#if GMP_LIMB_BITS != 64 || GMP_NAIL_BITS != 0
#error "fedlearn's fixed-base kernel needs 64-bit limbs without nails"
#endif

/* 8,192-bit moduli at most (the p^2 of a 8,192-bit key). */
#define MAX_LIMBS 128

/* An odd modulus and its Montgomery representation (the mpn path's or the IFMA path's). */
typedef struct {
    mp_size_t limbs;  /* 64-bit limbs of the modulus, and of each result */
    int vectors;      /* > 0: the IFMA path, residues of 8 * vectors 52-bit digits */
    mp_size_t stride; /* 64-bit words per residue: limbs, or 8 * vectors digits */
    mp_limb_t minv;   /* -modulus^-1 mod 2^64 (mpn path) or mod 2^52 (IFMA path) */
    mp_limb_t *modulus;
    uint64_t *modulus_digits; /* the IFMA path's modulus, 8 * vectors digits */
    uint64_t *r_squared;      /* R^2 mod m, plain, in the representation: x R = domain_mul(x, R^2) */
} Modulus;

typedef struct {
    PyObject_HEAD
    Modulus mod;
    int rows;
    int window;
    uint64_t *entries; /* rows * 2^window residues of ``mod.stride`` words */
} TableObject;

/* r = a * b * 2^(-64 n) mod m for a, b < m (Montgomery's product); r may alias a or b. */
static void
mont_mul(mp_limb_t *r, const mp_limb_t *a, const mp_limb_t *b, const mp_limb_t *m, mp_size_t n,
         mp_limb_t minv)
{
    mp_limb_t t[2 * MAX_LIMBS];
    mpn_mul_n(t, a, b, n);
    /* REDC: clear the low limb i by adding a multiple of m at i; its carry, which belongs at
     * i + n, is kept in the cleared limb and added in one pass at the end (as GMP's redc_1). */
    for (mp_size_t i = 0; i < n; i++) {
        t[i] = mpn_addmul_1(t + i, m, n, t[i] * minv);
    }
    mp_limb_t top = mpn_add_n(r, t + n, t, n);
    if (top || mpn_cmp(r, m, n) >= 0) {
        mpn_sub_n(r, r, m, n);
    }
}

/* r = a * 2^(-64 n) mod m: out of Montgomery form. */
static void
mont_reduce(mp_limb_t *r, const mp_limb_t *a, const mp_limb_t *m, mp_size_t n, mp_limb_t minv)
{
    mp_limb_t one[MAX_LIMBS];
    memset(one, 0, sizeof(mp_limb_t) * n);
    one[0] = 1;
    mont_mul(r, a, one, m, n, minv);
}

static inline void
prefetch_entry(const uint64_t *entry, mp_size_t n)
{
#if defined(__GNUC__)
    for (mp_size_t j = 0; j < n; j += 8) { /* one 64-byte line per 8 limbs */
        __builtin_prefetch(entry + j);
    }
#else
    (void)entry;
    (void)n;
#endif
}

static void
limbs_from_mpz(mp_limb_t *out, const mpz_t value, mp_size_t n)
{
    size_t count = 0;
    memset(out, 0, sizeof(mp_limb_t) * n);
    mpz_export(out, &count, -1, sizeof(mp_limb_t), 0, 0, value);
}

/* ---- the IFMA path --------------------------------------------------------------------- */

#define DIGIT_BITS 52
#define DIGIT_MASK ((UINT64_C(1) << DIGIT_BITS) - 1)
/* 8,192-bit moduli: (8192 + 2) / 416 rounded up. */
#define MAX_VECTORS 20

#if defined(__x86_64__) && defined(__GNUC__) && !defined(FEDLEARN_NO_IFMA)
#define HAVE_IFMA 1
#include <immintrin.h>

#define IFMA_TARGET __attribute__((target("avx512f,avx512ifma")))

/* r = a * b * 2^(-52 * 8 * nv) mod m, "almost": a, b < 2m in, r < 2m out (4m < 2^(416 nv)).
 * Digits are < 2^52 in and out; r may alias a or b. After each digit of b, lane 0 holds 0 mod
 * 2^52 and the accumulator shifts down one lane, its carry joining the next digit; the high
 * halves of the products land one lane up, so they are added after the shift. */
static inline __attribute__((always_inline)) IFMA_TARGET void
amm_body(uint64_t *r, const uint64_t *a, const uint64_t *b, const uint64_t *m, uint64_t k0,
         const int nv)
{
    __m512i A[MAX_VECTORS], M[MAX_VECTORS], acc[MAX_VECTORS];
    const __m512i zero = _mm512_setzero_si512();
#pragma GCC unroll 20
    for (int v = 0; v < nv; v++) {
        A[v] = _mm512_loadu_si512((const void *)(a + 8 * v));
        M[v] = _mm512_loadu_si512((const void *)(m + 8 * v));
        acc[v] = zero;
    }
    for (int i = 0; i < 8 * nv; i++) {
        __m512i bi = _mm512_set1_epi64((long long)b[i]);
#pragma GCC unroll 20
        for (int v = 0; v < nv; v++) {
            acc[v] = _mm512_madd52lo_epu64(acc[v], A[v], bi);
        }
        uint64_t low = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(acc[0]));
        __m512i q = _mm512_set1_epi64((long long)((low * k0) & DIGIT_MASK));
#pragma GCC unroll 20
        for (int v = 0; v < nv; v++) {
            acc[v] = _mm512_madd52lo_epu64(acc[v], M[v], q);
        }
        low = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(acc[0]));
#pragma GCC unroll 20
        for (int v = 0; v < nv - 1; v++) {
            acc[v] = _mm512_alignr_epi64(acc[v + 1], acc[v], 1);
        }
        acc[nv - 1] = _mm512_alignr_epi64(zero, acc[nv - 1], 1);
        acc[0] = _mm512_add_epi64(acc[0], _mm512_maskz_set1_epi64(1, (long long)(low >> 52)));
#pragma GCC unroll 20
        for (int v = 0; v < nv; v++) {
            acc[v] = _mm512_madd52hi_epu64(acc[v], A[v], bi);
            acc[v] = _mm512_madd52hi_epu64(acc[v], M[v], q);
        }
    }
    uint64_t lanes[8 * MAX_VECTORS];
#pragma GCC unroll 20
    for (int v = 0; v < nv; v++) {
        _mm512_storeu_si512((void *)(lanes + 8 * v), acc[v]);
    }
    uint64_t carry = 0;
    for (int j = 0; j < 8 * nv; j++) {
        uint64_t x = lanes[j] + carry;
        r[j] = x & DIGIT_MASK;
        carry = x >> DIGIT_BITS;
    }
}

typedef void (*amm_function)(uint64_t *, const uint64_t *, const uint64_t *, const uint64_t *,
                             uint64_t);

#define AMM_FOR(NV)                                                                              \
    static IFMA_TARGET void amm_##NV(uint64_t *r, const uint64_t *a, const uint64_t *b,          \
                                     const uint64_t *m, uint64_t k0)                             \
    {                                                                                            \
        amm_body(r, a, b, m, k0, NV);                                                            \
    }
AMM_FOR(1) AMM_FOR(2) AMM_FOR(3) AMM_FOR(4) AMM_FOR(5) AMM_FOR(6) AMM_FOR(7) AMM_FOR(8)
AMM_FOR(9) AMM_FOR(10) AMM_FOR(11) AMM_FOR(12) AMM_FOR(13) AMM_FOR(14) AMM_FOR(15)
AMM_FOR(16) AMM_FOR(17) AMM_FOR(18) AMM_FOR(19) AMM_FOR(20)

static const amm_function amm_functions[MAX_VECTORS + 1] = {
    NULL,    amm_1,  amm_2,  amm_3,  amm_4,  amm_5,  amm_6,  amm_7,  amm_8,  amm_9,  amm_10,
    amm_11, amm_12, amm_13, amm_14, amm_15, amm_16, amm_17, amm_18, amm_19, amm_20,
};

static int
ifma_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512ifma");
}
#else
static int
ifma_supported(void)
{
    return 0;
}
#endif

/* x (< 2^(64 * limbs)) as 52-bit digits, ``digits`` of them. */
static void
digits_from_limbs(uint64_t *digits, mp_size_t count, const mp_limb_t *limbs, mp_size_t limbs_count)
{
    for (mp_size_t j = 0; j < count; j++) {
        size_t bit = (size_t)j * DIGIT_BITS;
        size_t word = bit / 64, shift = bit % 64;
        uint64_t value = 0;
        if ((mp_size_t)word < limbs_count) {
            value = limbs[word] >> shift;
            if (shift > 64 - DIGIT_BITS && (mp_size_t)word + 1 < limbs_count) {
                value |= limbs[word + 1] << (64 - shift);
            }
        }
        digits[j] = value & DIGIT_MASK;
    }
}

/* 52-bit digits back to ``limbs_count`` limbs (the value must fit). */
static void
limbs_from_digits(mp_limb_t *limbs, mp_size_t limbs_count, const uint64_t *digits, mp_size_t count)
{
    memset(limbs, 0, sizeof(mp_limb_t) * limbs_count);
    for (mp_size_t j = 0; j < count; j++) {
        size_t bit = (size_t)j * DIGIT_BITS;
        size_t word = bit / 64, shift = bit % 64;
        if ((mp_size_t)word < limbs_count) {
            limbs[word] |= digits[j] << shift;
        }
        if (shift > 64 - DIGIT_BITS && (mp_size_t)word + 1 < limbs_count) {
            limbs[word + 1] |= digits[j] >> (64 - shift);
        }
    }
}

/* ---- one interface over both paths -------------------------------------------------------- */

/* r = a * b / R mod m in the modulus's representation (r may alias a or b). */
static inline void
domain_mul(const Modulus *t, uint64_t *r, const uint64_t *a, const uint64_t *b)
{
#ifdef HAVE_IFMA
    if (t->vectors) {
        amm_functions[t->vectors](r, a, b, t->modulus_digits, t->minv);
        return;
    }
#endif
    mont_mul(r, a, b, t->modulus, t->limbs, t->minv);
}

/* The residue a / R mod m, fully reduced, as the modulus's limbs. */
static void
domain_to_limbs(const Modulus *t, mp_limb_t *out, const uint64_t *a)
{
    if (!t->vectors) {
        mont_reduce(out, a, t->modulus, t->limbs, t->minv);
        return;
    }
    uint64_t one[8 * MAX_VECTORS], reduced[8 * MAX_VECTORS];
    memset(one, 0, sizeof(one));
    one[0] = 1;
    domain_mul(t, reduced, a, one); /* < m + 1: a / R + q m / R with q < R */
    limbs_from_digits(out, t->limbs, reduced, 8 * t->vectors);
    if (mpn_cmp(out, t->modulus, t->limbs) >= 0) {
        mpn_sub_n(out, out, t->modulus, t->limbs);
    }
}

/* A plain residue x < m (limbs) in the representation: x R mod m. */
static void
domain_from_limbs(const Modulus *t, uint64_t *out, const mp_limb_t *x)
{
    uint64_t plain[8 * MAX_VECTORS + MAX_LIMBS];
    if (t->vectors) {
        digits_from_limbs(plain, t->stride, x, t->limbs);
    } else {
        memcpy(plain, x, sizeof(mp_limb_t) * t->limbs);
    }
    domain_mul(t, out, plain, t->r_squared);
}

/* n limbs as 8 n little-endian bytes (whatever the host's byte order). */
static void
store_limbs(unsigned char *target, const mp_limb_t *limbs, mp_size_t n)
{
    for (mp_size_t j = 0; j < n; j++) {
        for (int b = 0; b < 8; b++) {
            target[j * 8 + b] = (unsigned char)(limbs[j] >> (8 * b));
        }
    }
}

static void
modulus_free(Modulus *t)
{
    PyMem_Free(t->modulus);
    PyMem_Free(t->modulus_digits);
    PyMem_Free(t->r_squared);
    t->modulus = NULL;
    t->modulus_digits = NULL;
    t->r_squared = NULL;
}

/* Set t up for the odd modulus m (> 1, at most MAX_LIMBS limbs); the IFMA path if ``vector`` and
 * the processor has it. Returns -1 with a Python error set on failure. */
static int
modulus_init(Modulus *t, const mpz_t m, int vector)
{
    mp_size_t n = (mp_size_t)mpz_size(m);
    if (mpz_cmp_ui(m, 1) <= 0 || mpz_even_p(m) || n > MAX_LIMBS) {
        PyErr_SetString(PyExc_ValueError, "the modulus must be odd, > 1 and at most 8192 bits");
        return -1;
    }
    modulus_free(t);
    /* The IFMA path needs R = 2^(416 V) > 4m. */
    int vectors = vector && ifma_supported() ? (int)((mpz_sizeinbase(m, 2) + 2 + 415) / 416) : 0;
    t->limbs = n;
    t->vectors = vectors;
    t->stride = vectors ? 8 * vectors : n;
    t->modulus = PyMem_Malloc(sizeof(mp_limb_t) * n);
    t->r_squared = PyMem_Malloc(sizeof(uint64_t) * t->stride);
    if (vectors) {
        t->modulus_digits = PyMem_Malloc(sizeof(uint64_t) * t->stride);
    }
    if (t->modulus == NULL || t->r_squared == NULL || (vectors && t->modulus_digits == NULL)) {
        modulus_free(t);
        PyErr_NoMemory();
        return -1;
    }
    limbs_from_mpz(t->modulus, m, n);
    /* -m^-1 mod 2^64 by Newton's iteration (each step doubles the correct low bits). */
    mp_limb_t inverse = 1;
    for (int step = 0; step < 6; step++) {
        inverse *= 2 - t->modulus[0] * inverse;
    }
    t->minv = -inverse;
    mp_bitcnt_t r_bits = vectors ? (mp_bitcnt_t)DIGIT_BITS * t->stride : 64 * (mp_bitcnt_t)n;
    mpz_t r_squared;
    mpz_init_set_ui(r_squared, 1);
    mpz_mul_2exp(r_squared, r_squared, 2 * r_bits);
    mpz_mod(r_squared, r_squared, m);
    if (vectors) {
        mp_limb_t limbs[MAX_LIMBS];
        digits_from_limbs(t->modulus_digits, t->stride, t->modulus, n);
        t->minv &= DIGIT_MASK;
        limbs_from_mpz(limbs, r_squared, n);
        digits_from_limbs(t->r_squared, t->stride, limbs, n);
    } else {
        limbs_from_mpz(t->r_squared, r_squared, n);
    }
    mpz_clear(r_squared);
    return 0;
}

static void
Table_dealloc(TableObject *self)
{
    modulus_free(&self->mod);
    PyMem_Free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Table_init(TableObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"modulus", "base", "rows", "window", "vector", NULL};
    Py_buffer modulus_bytes, base_bytes;
    int rows, window, vector = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*ii|p", keywords, &modulus_bytes, &base_bytes,
                                     &rows, &window, &vector)) {
        return -1;
    }
    int status = -1;
    mpz_t m, x;
    mpz_inits(m, x, NULL);
    mpz_import(m, modulus_bytes.len, -1, 1, 0, 0, modulus_bytes.buf);
    mpz_import(x, base_bytes.len, -1, 1, 0, 0, base_bytes.buf);
    PyMem_Free(self->entries);
    self->entries = NULL;
    if (window < 1 || window > 16 || rows < 1 || rows > 100000) {
        PyErr_SetString(PyExc_ValueError, "window must be in [1, 16] and rows in [1, 100000]");
        goto done;
    }
    if (modulus_init(&self->mod, m, vector) < 0) {
        goto done;
    }
    const Modulus *mod = &self->mod;
    mp_size_t stride = mod->stride;
    size_t per_row = (size_t)1 << window;
    if ((size_t)rows > SIZE_MAX / per_row / (size_t)stride / sizeof(uint64_t)) {
        PyErr_NoMemory();
        goto done;
    }
    self->entries = PyMem_Malloc(sizeof(uint64_t) * stride * per_row * (size_t)rows);
    if (self->entries == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    self->rows = rows;
    self->window = window;
    /* 1 and the base in the representation (x R mod m). */
    uint64_t one[8 * MAX_VECTORS + MAX_LIMBS], row_base[8 * MAX_VECTORS + MAX_LIMBS];
    mp_limb_t plain[MAX_LIMBS];
    mpz_mod(x, x, m);
    limbs_from_mpz(plain, x, mod->limbs);
    domain_from_limbs(mod, row_base, plain);
    mpz_set_ui(x, 1);
    limbs_from_mpz(plain, x, mod->limbs);
    domain_from_limbs(mod, one, plain);
    uint64_t *entries = self->entries;
    size_t bytes = sizeof(uint64_t) * stride;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < rows; i++) {
        uint64_t *row = entries + (size_t)i * per_row * stride;
        memcpy(row, one, bytes);
        memcpy(row + stride, row_base, bytes);
        for (size_t j = 2; j < per_row; j++) {
            domain_mul(mod, row + j * stride, row + (j - 1) * stride, row_base);
        }
        /* the next row's base: base**(2**(window * (i + 1))) = last entry times base */
        domain_mul(mod, row_base, row + (per_row - 1) * stride, row_base);
    }
    Py_END_ALLOW_THREADS
    status = 0;
done:
    mpz_clears(m, x, NULL);
    PyBuffer_Release(&modulus_bytes);
    PyBuffer_Release(&base_bytes);
    return status;
}

static PyObject *
Table_pow_many(TableObject *self, PyObject *args)
{
    Py_buffer digits;
    if (self->entries == NULL) {
        PyErr_SetString(PyExc_ValueError, "table not initialised");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*", &digits)) {
        return NULL;
    }
    mp_size_t n = self->mod.limbs, stride = self->mod.stride;
    Py_ssize_t per_exponent = (Py_ssize_t)self->rows * 2;
    if (digits.len % per_exponent != 0) {
        PyBuffer_Release(&digits);
        PyErr_SetString(PyExc_ValueError, "digits must be rows uint16 values per exponent");
        return NULL;
    }
    Py_ssize_t count = digits.len / per_exponent;
    const uint16_t *all = (const uint16_t *)digits.buf;
    uint16_t limit = (uint16_t)((1u << self->window) - 1);
    for (Py_ssize_t k = 0; k < count * self->rows; k++) {
        if (all[k] > limit) {
            PyBuffer_Release(&digits);
            PyErr_SetString(PyExc_ValueError, "a digit is not below 2**window");
            return NULL;
        }
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * n * (Py_ssize_t)sizeof(mp_limb_t));
    if (result == NULL) {
        PyBuffer_Release(&digits);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    size_t per_row = (size_t)1 << self->window;
    int rows = self->rows;
    const Modulus *mod = &self->mod;
    const uint64_t *entries = self->entries;
    Py_BEGIN_ALLOW_THREADS
    uint64_t accumulator[8 * MAX_VECTORS + MAX_LIMBS];
    mp_limb_t value[MAX_LIMBS];
    for (Py_ssize_t k = 0; k < count; k++) {
        const uint16_t *exponent = all + k * rows;
        int started = 0;
        /* The entries are scattered over tens of MB: ask for the next one while multiplying. */
        prefetch_entry(entries + (size_t)exponent[0] * stride, stride);
        for (int i = 0; i < rows; i++) {
            uint16_t window_digit = exponent[i];
            if (i + 1 < rows) {
                prefetch_entry(entries + ((size_t)(i + 1) * per_row + exponent[i + 1]) * stride,
                               stride);
            }
            if (window_digit == 0) {
                continue;
            }
            const uint64_t *entry = entries + ((size_t)i * per_row + window_digit) * stride;
            if (started) {
                domain_mul(mod, accumulator, accumulator, entry);
            } else {
                memcpy(accumulator, entry, sizeof(uint64_t) * stride);
                started = 1;
            }
        }
        if (started) {
            domain_to_limbs(mod, value, accumulator);
        } else {
            memset(value, 0, sizeof(mp_limb_t) * n);
            value[0] = 1;
        }
        store_limbs(out + (size_t)k * n * sizeof(mp_limb_t), value, n);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&digits);
    return result;
}

/* acc = b^e in the representation (b in it, e > 0): left-to-right sliding windows over the odd
 * powers b, b^3, ..., b^(2^w - 1). */
static void
domain_pow(const Modulus *t, uint64_t *acc, const uint64_t *b, uint64_t e)
{
    enum { WIDTH = 8 * MAX_VECTORS + MAX_LIMBS };
    uint64_t odd[16][WIDTH], square[WIDTH];
    mp_size_t stride = t->stride;
    int bits = 64 - __builtin_clzll(e);
    int w = bits <= 6 ? 1 : bits <= 24 ? 3 : bits <= 80 ? 4 : 5;
    memcpy(odd[0], b, sizeof(uint64_t) * stride);
    if (w > 1) {
        domain_mul(t, square, b, b);
        for (int j = 1; j < (1 << (w - 1)); j++) {
            domain_mul(t, odd[j], odd[j - 1], square);
        }
    }
    int started = 0;
    int top = bits - 1;
    while (top >= 0) {
        if (!((e >> top) & 1)) {
            domain_mul(t, acc, acc, acc); /* started: the top bit is set */
            top--;
            continue;
        }
        int low = top - w + 1 < 0 ? 0 : top - w + 1;
        while (!((e >> low) & 1)) {
            low++;
        }
        uint64_t window = (e >> low) & ((UINT64_C(1) << (top - low + 1)) - 1);
        if (started) {
            for (int k = 0; k < top - low + 1; k++) {
                domain_mul(t, acc, acc, acc);
            }
            domain_mul(t, acc, acc, odd[window >> 1]);
        } else {
            memcpy(acc, odd[window >> 1], sizeof(uint64_t) * stride);
            started = 1;
        }
        top = low - 1;
    }
}

static PyObject *
powmod_many(PyObject *module, PyObject *args, PyObject *kwds)
{
    (void)module;
    static char *keywords[] = {"modulus", "bases", "exponents", "vector", NULL};
    Py_buffer modulus_bytes, bases_bytes, exponents_bytes;
    int vector = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*y*|p", keywords, &modulus_bytes,
                                     &bases_bytes, &exponents_bytes, &vector)) {
        return NULL;
    }
    PyObject *result = NULL;
    Modulus mod = {0};
    uint64_t *domain = NULL, *prefix = NULL;
    mpz_t m, inverse;
    mpz_inits(m, inverse, NULL);
    mpz_import(m, modulus_bytes.len, -1, 1, 0, 0, modulus_bytes.buf);
    Py_ssize_t width = modulus_bytes.len;
    Py_ssize_t count = exponents_bytes.len / (Py_ssize_t)sizeof(int64_t);
    if (width == 0 || exponents_bytes.len % (Py_ssize_t)sizeof(int64_t) != 0 ||
        bases_bytes.len != count * width) {
        PyErr_SetString(PyExc_ValueError,
                        "bases must be one modulus-width value per int64 exponent");
        goto done;
    }
    if (modulus_init(&mod, m, vector) < 0) {
        goto done;
    }
    mp_size_t n = mod.limbs, stride = mod.stride;
    if ((size_t)width > (size_t)n * sizeof(mp_limb_t)) {
        PyErr_SetString(PyExc_ValueError, "the modulus has leading zero bytes");
        goto done;
    }
    const int64_t *exponents = (const int64_t *)exponents_bytes.buf;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (exponents[i] > INT64_C(1) << 62 || exponents[i] < -(INT64_C(1) << 62)) {
            PyErr_SetString(PyExc_ValueError, "an exponent is not below 2**62 in magnitude");
            goto done;
        }
    }
    domain = PyMem_Malloc(sizeof(uint64_t) * stride * (size_t)(count ? count : 1));
    prefix = PyMem_Malloc(sizeof(uint64_t) * stride * (size_t)(count ? count : 1));
    result = PyBytes_FromStringAndSize(NULL, count * n * (Py_ssize_t)sizeof(mp_limb_t));
    if (domain == NULL || prefix == NULL || result == NULL) {
        Py_CLEAR(result);
        PyErr_NoMemory();
        goto done;
    }
    const unsigned char *bases = (const unsigned char *)bases_bytes.buf;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    int failure = 0; /* 1: a base not below the modulus; 2: a base with no inverse */
    Py_BEGIN_ALLOW_THREADS
    mp_limb_t limbs[MAX_LIMBS];
    /* 1. every base in the representation */
    for (Py_ssize_t i = 0; i < count && !failure; i++) {
        memset(limbs, 0, sizeof(mp_limb_t) * n);
        const unsigned char *chunk = bases + i * width;
        for (Py_ssize_t byte = 0; byte < width; byte++) {
            limbs[byte / 8] |= (mp_limb_t)chunk[byte] << (8 * (byte % 8));
        }
        if (mpn_cmp(limbs, mod.modulus, n) >= 0) {
            failure = 1;
            break;
        }
        domain_from_limbs(&mod, domain + i * stride, limbs);
    }
    /* 2. the bases of negative exponents inverted together (Montgomery's trick): one inversion,
     * three products each. */
    Py_ssize_t negatives = 0, last = -1;
    for (Py_ssize_t i = 0; i < count && !failure; i++) {
        if (exponents[i] < 0) {
            uint64_t *slot = prefix + negatives * stride;
            if (negatives) {
                domain_mul(&mod, slot, prefix + (negatives - 1) * stride, domain + i * stride);
            } else {
                memcpy(slot, domain + i * stride, sizeof(uint64_t) * stride);
            }
            negatives++;
            last = i;
        }
    }
    if (negatives && !failure) {
        uint64_t total[8 * MAX_VECTORS + MAX_LIMBS];
        domain_to_limbs(&mod, limbs, prefix + (negatives - 1) * stride);
        mpz_import(inverse, (size_t)n, -1, sizeof(mp_limb_t), 0, 0, limbs);
        if (!mpz_invert(inverse, inverse, m)) {
            failure = 2;
        } else {
            limbs_from_mpz(limbs, inverse, n);
            domain_from_limbs(&mod, total, limbs); /* (b_1 ... b_k)^-1 R */
            Py_ssize_t j = negatives - 1;
            for (Py_ssize_t i = last; i >= 0; i--) {
                if (exponents[i] >= 0) {
                    continue;
                }
                uint64_t *base = domain + i * stride;
                if (j > 0) {
                    uint64_t inverted[8 * MAX_VECTORS + MAX_LIMBS];
                    domain_mul(&mod, inverted, total, prefix + (j - 1) * stride);
                    domain_mul(&mod, total, total, base);
                    memcpy(base, inverted, sizeof(uint64_t) * stride);
                } else {
                    memcpy(base, total, sizeof(uint64_t) * stride);
                }
                j--;
            }
        }
    }
    /* 3. the powers */
    for (Py_ssize_t i = 0; i < count && !failure; i++) {
        int64_t k = exponents[i];
        uint64_t e = k < 0 ? (uint64_t)(-k) : (uint64_t)k;
        if (e == 0) {
            memset(limbs, 0, sizeof(mp_limb_t) * n);
            limbs[0] = 1;
        } else {
            uint64_t acc[8 * MAX_VECTORS + MAX_LIMBS];
            domain_pow(&mod, acc, domain + i * stride, e);
            domain_to_limbs(&mod, limbs, acc);
        }
        store_limbs(out + (size_t)i * n * sizeof(mp_limb_t), limbs, n);
    }
    Py_END_ALLOW_THREADS
    if (failure) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_ValueError, failure == 1 ? "a base is not below the modulus"
                                                       : "a base has no inverse modulo the modulus");
    }
done:
    PyMem_Free(domain);
    PyMem_Free(prefix);
    modulus_free(&mod);
    mpz_clears(m, inverse, NULL);
    PyBuffer_Release(&modulus_bytes);
    PyBuffer_Release(&bases_bytes);
    PyBuffer_Release(&exponents_bytes);
    return result;
}

static PyObject *
Table_get_vectorised(TableObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->mod.vectors > 0);
}

static PyObject *
Table_get_limbs(TableObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t((Py_ssize_t)self->mod.limbs);
}

static PyMethodDef Table_methods[] = {
    {"pow_many", (PyCFunction)Table_pow_many, METH_VARARGS,
     "pow_many(digits) -> bytes: the product of one entry per row for each exponent's digits."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Table_getset[] = {
    {"limbs", (getter)Table_get_limbs, NULL, "64-bit limbs per residue", NULL},
    {"vectorised", (getter)Table_get_vectorised, NULL, "whether the IFMA path runs", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fedlearn.crypto._fixedbase.Table",
    .tp_basicsize = sizeof(TableObject),
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A fixed base's window table modulo an odd modulus, in Montgomery form.",
    .tp_methods = Table_methods,
    .tp_getset = Table_getset,
    .tp_init = (initproc)Table_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef module_methods[] = {
    {"powmod_many", (PyCFunction)(void (*)(void))powmod_many, METH_VARARGS | METH_KEYWORDS,
     "powmod_many(modulus, bases, exponents, vector=True) -> bytes: base_i ** k_i mod modulus for "
     "int64 exponents (a negative one inverts its base), each result as the modulus's limbs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = module_methods,
    .m_name = "fedlearn.crypto._fixedbase",
    .m_doc = "Fixed-base window tables in Montgomery form (GMP's mpn layer).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fixedbase(void)
{
    if (PyType_Ready(&TableType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&TableType);
    if (PyModule_AddObject(m, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(&TableType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "ifma", ifma_supported()) < 0 ||
        PyModule_AddStringConstant(m, "gmp_version", gmp_version) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
