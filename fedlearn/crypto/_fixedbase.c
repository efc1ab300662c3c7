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

typedef struct {
    PyObject_HEAD
    mp_size_t limbs;
    int rows;
    int window;
    mp_limb_t minv; /* -modulus^-1 mod 2^64 */
    mp_limb_t *modulus;
    mp_limb_t *entries; /* rows * 2^window * limbs */
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
prefetch_entry(const mp_limb_t *entry, mp_size_t n)
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

static void
Table_dealloc(TableObject *self)
{
    PyMem_Free(self->modulus);
    PyMem_Free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
Table_init(TableObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"modulus", "base", "rows", "window", NULL};
    Py_buffer modulus_bytes, base_bytes;
    int rows, window;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*y*ii", keywords, &modulus_bytes, &base_bytes,
                                     &rows, &window)) {
        return -1;
    }
    int status = -1;
    mpz_t m, x, r;
    mpz_inits(m, x, r, NULL);
    mpz_import(m, modulus_bytes.len, -1, 1, 0, 0, modulus_bytes.buf);
    mpz_import(x, base_bytes.len, -1, 1, 0, 0, base_bytes.buf);
    mp_size_t n = (mp_size_t)mpz_size(m);
    if (window < 1 || window > 16 || rows < 1 || rows > 100000) {
        PyErr_SetString(PyExc_ValueError, "window must be in [1, 16] and rows in [1, 100000]");
        goto done;
    }
    if (mpz_cmp_ui(m, 1) <= 0 || mpz_even_p(m) || n > MAX_LIMBS) {
        PyErr_SetString(PyExc_ValueError, "the modulus must be odd, > 1 and at most 8192 bits");
        goto done;
    }
    size_t per_row = (size_t)1 << window;
    if ((size_t)rows > SIZE_MAX / per_row / (size_t)n / sizeof(mp_limb_t)) {
        PyErr_NoMemory();
        goto done;
    }
    PyMem_Free(self->modulus);
    PyMem_Free(self->entries);
    self->modulus = PyMem_Malloc(sizeof(mp_limb_t) * n);
    self->entries = PyMem_Malloc(sizeof(mp_limb_t) * n * per_row * (size_t)rows);
    if (self->modulus == NULL || self->entries == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    self->limbs = n;
    self->rows = rows;
    self->window = window;
    limbs_from_mpz(self->modulus, m, n);
    /* minv = -m^-1 mod 2^64 by Newton's iteration (each step doubles the correct low bits). */
    mp_limb_t inverse = 1;
    for (int step = 0; step < 6; step++) {
        inverse *= 2 - self->modulus[0] * inverse;
    }
    self->minv = -inverse;
    /* Montgomery forms of 1 and of the base: x * 2^(64 n) mod m. */
    mp_limb_t one[MAX_LIMBS], row_base[MAX_LIMBS];
    mpz_set_ui(r, 1);
    mpz_mul_2exp(r, r, 64 * (mp_bitcnt_t)n);
    mpz_mod(r, r, m);
    limbs_from_mpz(one, r, n);
    mpz_mod(x, x, m);
    mpz_mul_2exp(x, x, 64 * (mp_bitcnt_t)n);
    mpz_mod(x, x, m);
    limbs_from_mpz(row_base, x, n);
    const mp_limb_t *modulus = self->modulus;
    mp_limb_t minv = self->minv;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < rows; i++) {
        mp_limb_t *row = self->entries + (size_t)i * per_row * n;
        memcpy(row, one, sizeof(mp_limb_t) * n);
        memcpy(row + n, row_base, sizeof(mp_limb_t) * n);
        for (size_t j = 2; j < per_row; j++) {
            mont_mul(row + j * n, row + (j - 1) * n, row_base, modulus, n, minv);
        }
        /* the next row's base: base**(2**(window * (i + 1))) = last entry times base */
        mont_mul(row_base, row + (per_row - 1) * n, row_base, modulus, n, minv);
    }
    Py_END_ALLOW_THREADS
    status = 0;
done:
    mpz_clears(m, x, r, NULL);
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
    mp_size_t n = self->limbs;
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
    const mp_limb_t *modulus = self->modulus;
    mp_limb_t minv = self->minv;
    int rows = self->rows;
    const mp_limb_t *entries = self->entries;
    Py_BEGIN_ALLOW_THREADS
    mp_limb_t accumulator[MAX_LIMBS], value[MAX_LIMBS];
    for (Py_ssize_t k = 0; k < count; k++) {
        const uint16_t *exponent = all + k * rows;
        int started = 0;
        /* The entries are scattered over tens of MB: ask for the next one while multiplying. */
        prefetch_entry(entries + (size_t)exponent[0] * n, n);
        for (int i = 0; i < rows; i++) {
            uint16_t digit = exponent[i];
            if (i + 1 < rows) {
                prefetch_entry(entries + ((size_t)(i + 1) * per_row + exponent[i + 1]) * n, n);
            }
            if (digit == 0) {
                continue;
            }
            const mp_limb_t *entry = entries + ((size_t)i * per_row + digit) * n;
            if (started) {
                mont_mul(accumulator, accumulator, entry, modulus, n, minv);
            } else {
                memcpy(accumulator, entry, sizeof(mp_limb_t) * n);
                started = 1;
            }
        }
        if (started) {
            mont_reduce(value, accumulator, modulus, n, minv);
        } else {
            memset(value, 0, sizeof(mp_limb_t) * n);
            value[0] = 1;
        }
        unsigned char *target = out + (size_t)k * n * sizeof(mp_limb_t);
        for (mp_size_t j = 0; j < n; j++) {
            mp_limb_t limb = value[j];
            for (int b = 0; b < 8; b++) {
                target[j * 8 + b] = (unsigned char)(limb >> (8 * b));
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&digits);
    return result;
}

static PyObject *
Table_get_limbs(TableObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t((Py_ssize_t)self->limbs);
}

static PyMethodDef Table_methods[] = {
    {"pow_many", (PyCFunction)Table_pow_many, METH_VARARGS,
     "pow_many(digits) -> bytes: the product of one entry per row for each exponent's digits."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Table_getset[] = {
    {"limbs", (getter)Table_get_limbs, NULL, "64-bit limbs per residue", NULL},
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

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
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
    if (PyModule_AddStringConstant(m, "gmp_version", gmp_version) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
