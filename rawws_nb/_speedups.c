/* rawws_nb._speedups: the compiled fast path of rawws_nb.wire, the recorder and the
 * session (optional).
 *
 * Functions, each with a pure-Python equivalent in wire.py that stays the reference
 * and the fallback (the module is built when a C compiler is there; RAWWS_NB_PURE=1
 * turns it off):
 *
 *   flush_rows(...): the recorder's flush (rawws_nb/timeline/recorder.py), see below.
 *
 *   Lane(...): the session's per-frame path for plain frames (rawws_nb/session.py,
 *   `RawSession._on_data` and `_send_nowait`, the reference), see below.
 *
 *   stage(state, t_ns, code, payload): the recorder's stage_tx, see below; stagers(state)
 *   gives it and stage_rx as methods of a Stager made from the state (what the recorder
 *   calls).
 *
 *   stage_rx(state, t_ns, codes, frames, compressed=0, joined=None): its stage_rx.
 *
 *   PayloadBuffer(n): bytes to read a large frame's payload into, see below.
 *
 *   mask(data, key, prefix=b"") -> bytes
 *       prefix + (data XOR the 4-byte key repeated): RFC 6455 section 5.3.
 *
 *   mask_in_place(buffer, key): the same XOR, in a writable buffer.
 *
 *   masked_frame(b0, payload, keys, pos) -> bytes
 *       A whole masked frame: wire.header_bytes(b0, len(payload), key) + the payload
 *       masked with key, where key = keys[pos:pos + 4] (the client's writer).
 *
 *   read_simple(data, pos, masked, max_frame, max_message, count, text, binary, tag,
 *               frames, codes, joined, join_max) -> (int, int)
 *       Parses, from data[pos:], at most `count` frames of the one shape that needs no
 *       judgement: a complete, final (fin) Text or Binary frame with no rsv bit, masked
 *       exactly when `masked`, minimally encoded length within `max_frame` and
 *       `max_message` (-1: no limit), and, for Text, valid UTF-8. Each one is appended
 *       to `frames` (an instance of `text` or `binary` with `data`, `fin`, `_ext` set, as
 *       frames.make_frame builds it) and its header code to `codes`, an array('q')
 *       (length << 16 | tag | first header byte, as frames.header_code packs it).
 *       `joined` (a bytearray, or None): each payload is appended to it too, as long as
 *       none so far was longer than `join_max`. Returns the position after the last
 *       frame taken and the longest payload taken (-1: none). It stops at the first frame of any other shape,
 *       incomplete or invalid, without judging it: the Python reader takes that one
 *       (and reports any violation). The caller only calls it between messages.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *data_descr = NULL; /* Frame.__dict__["data"], a member descriptor */
static PyObject *fin_descr = NULL;  /* Frame.__dict__["fin"] */
static PyObject *ext_descr = NULL;  /* Frame.__dict__["_ext"]: rsv bits and the compressed flag, 0 here */
static PyObject *zero = NULL;
static PyObject *frombytes_name = NULL; /* "frombytes", interned */

/* XOR n bytes of src with the key (key4 as read from memory), into dst. */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char key[4])
{
    uint64_t k8;
    uint32_t k4;
    memcpy(&k4, key, 4);
    k8 = ((uint64_t)k4 << 32) | k4;
    Py_ssize_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= k8; b ^= k8; c ^= k8; d ^= k8;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t a;
        memcpy(&a, src + i, 8);
        a ^= k8;
        memcpy(dst + i, &a, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

static PyObject *
speedups_mask(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"data", "key", "prefix", NULL};
    Py_buffer data, key, prefix = {0};
    PyObject *out = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*|y*:mask", kwlist, &data, &key, &prefix)) {
        return NULL;
    }
    if (key.len != 4) {
        PyErr_SetString(PyExc_ValueError, "the mask key must be 4 bytes");
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, prefix.len + data.len);
    if (out == NULL) {
        goto done;
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    if (prefix.len) {
        memcpy(dst, prefix.buf, prefix.len);
    }
    Py_BEGIN_ALLOW_THREADS
    xor_mask(dst + prefix.len, (const unsigned char *)data.buf, data.len, (const unsigned char *)key.buf);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    if (prefix.obj != NULL) {
        PyBuffer_Release(&prefix);
    }
    return out;
}

/* mask_in_place(buffer, key): XOR a writable buffer with the 4-byte key, in place (a
 * large masked frame read into its payload buffer is unmasked where it lies). */
static PyObject *
speedups_mask_in_place(PyObject *module, PyObject *args)
{
    Py_buffer data, key;
    if (!PyArg_ParseTuple(args, "w*y*:mask_in_place", &data, &key)) {
        return NULL;
    }
    if (key.len != 4) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "the mask key must be 4 bytes");
        return NULL;
    }
    unsigned char k[4];
    memcpy(k, key.buf, 4);
    Py_BEGIN_ALLOW_THREADS
    xor_mask((unsigned char *)data.buf, (const unsigned char *)data.buf, data.len, k);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    Py_RETURN_NONE;
}

/* masked_frame(b0, payload, keys, pos) -> bytes: a whole client frame (header with the
 * shortest length form and the mask bit, the 4-byte key keys[pos:pos+4], the payload
 * masked with it), in one buffer: what wire.header_bytes and mask() give, in one call. */
static PyObject *
speedups_masked_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "masked_frame() takes 4 arguments");
        return NULL;
    }
    long b0 = PyLong_AsLong(args[0]);
    Py_ssize_t pos = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (b0 < 0 || b0 > 255) {
        PyErr_SetString(PyExc_ValueError, "masked_frame(): b0 is one byte");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[2]) || pos < 0 || pos + 4 > PyBytes_GET_SIZE(args[2])) {
        PyErr_SetString(PyExc_ValueError, "masked_frame(): keys must be bytes holding 4 bytes at pos");
        return NULL;
    }
    const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(args[2]) + pos;
    Py_buffer data;
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Py_ssize_t n = data.len;
    Py_ssize_t head = n < 126 ? 2 : n < 65536 ? 4 : 10;
    PyObject *out = PyBytes_FromStringAndSize(NULL, head + 4 + n);
    if (out != NULL) {
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
        dst[0] = (unsigned char)b0;
        if (n < 126) {
            dst[1] = (unsigned char)(0x80 | n);
        }
        else if (n < 65536) {
            dst[1] = 0x80 | 126;
            dst[2] = (unsigned char)(n >> 8);
            dst[3] = (unsigned char)n;
        }
        else {
            dst[1] = 0x80 | 127;
            unsigned long long len = (unsigned long long)n;
            for (int i = 0; i < 8; i++) {
                dst[2 + i] = (unsigned char)(len >> (56 - 8 * i));
            }
        }
        memcpy(dst + head, key, 4);
        xor_mask(dst + head + 4, (const unsigned char *)data.buf, n, key);
    }
    PyBuffer_Release(&data);
    return out;
}

/* stage(state, t_ns, code, payload) -> None: the recorder's stage_tx (rawws_nb/timeline/
 * recorder.py, `Recorder._stage_tx`, the reference) in one call, for the recorder that
 * built `state` = (stage, tpos, tval, holder, payload_cap, flush_at, recorder, pack_min):
 * three bytearrays of native int64s (the stage's header codes, each batch's stage index
 * and timestamp); holder = [the list single payloads go to, how many it may hold
 * before the recorder must trim, the open run of packed batches or None] (the payload
 * store's tail, `_PayloadStore`); the limits; a weak proxy of the recorder for what stays
 * in Python (a compressed frame: recorder._stage_tx; a flush; a trim); and the fewest
 * frames a batch is packed from (stage_rx's).
 *
 * stage_rx(state, t_ns, codes, frames, compressed=0, joined=None) -> None: the recorder's
 * stage_rx (`Recorder._stage_rx`, the reference) for the same state: a batch of small
 * frames whose payloads the reader joined (`joined`) joins the open run in a few calls;
 * one frame is staged as stage_tx stages it; anything else goes to the reference.
 *
 * stagers(state) -> (stage_tx, stage_rx): the two without the state argument, methods
 * of a Stager that unpacked the state once (what the recorder binds, and what the
 * session's lane calls natively: no tuple read and no int converted per frame). */
static PyObject *stage_tx_name = NULL, *flush_name = NULL, *trim_name = NULL;
static PyObject *stage_rx_name = NULL, *blobs_name = NULL, *ends_name = NULL, *add_packed_name = NULL;
static PyObject *store_name = NULL, *data_name = NULL, *open_batch_name = NULL;

/* The recorder's staging buffers are bytearrays of native int64s (`Recorder._stage`,
 * `_tpos`, `_tval`): appending is a resize and a copy (append8: a copy, in place). */
static int
append_long(PyObject *arr, long long value)
{
    if (!PyByteArray_CheckExact(arr)) {
        PyErr_SetString(PyExc_TypeError, "stage(): the staging buffers are bytearrays");
        return -1;
    }
    Py_ssize_t at = PyByteArray_GET_SIZE(arr);
    if (PyByteArray_Resize(arr, at + 8) < 0) return -1;
    int64_t v = (int64_t)value;
    memcpy(PyByteArray_AS_STRING(arr) + at, &v, 8);
    return 0;
}

/* append_long, writing in place when the bytearray has room (the common case: it
 * over-allocates as it grows): no call, no resize. Not while a buffer of it is
 * exported (a resize would then fail, and so must this). */
static inline int
append8(PyObject *arr, long long value)
{
    PyByteArrayObject *b = (PyByteArrayObject *)arr;
    Py_ssize_t size = Py_SIZE(b);
    if (b->ob_exports == 0 && (b->ob_start - b->ob_bytes) + size + 8 < b->ob_alloc) {
        int64_t v = (int64_t)value;
        memcpy(b->ob_start + size, &v, 8);
        Py_SET_SIZE(b, size + 8);
        b->ob_start[size + 8] = '\0'; /* a bytearray's trailing NUL, as PyByteArray_Resize keeps it */
        return 0;
    }
    return append_long(arr, value);
}

static int
append_obj(PyObject *arr, PyObject *v)
{
    long long value = PyLong_AsLongLong(v);
    if (value == -1 && PyErr_Occurred()) return -1;
    return append_long(arr, value);
}

static int
call_back(PyObject *recorder, PyObject *name)
{
    PyObject *r = PyObject_CallMethodNoArgs(recorder, name);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* Checks `state` and, once, looks up what the stagers call. */
static int
stage_init(PyObject *state)
{
    if (!PyTuple_CheckExact(state) || PyTuple_GET_SIZE(state) != 8) {
        PyErr_SetString(PyExc_TypeError, "stage(): state is the recorder's 8-tuple");
        return -1;
    }
    if (stage_tx_name != NULL) return 0;
    if ((stage_tx_name = PyUnicode_InternFromString("_stage_tx")) == NULL ||
        (stage_rx_name = PyUnicode_InternFromString("_stage_rx")) == NULL ||
        (flush_name = PyUnicode_InternFromString("_flush")) == NULL ||
        (trim_name = PyUnicode_InternFromString("_trim")) == NULL ||
        (blobs_name = PyUnicode_InternFromString("blobs")) == NULL ||
        (ends_name = PyUnicode_InternFromString("ends")) == NULL ||
        (add_packed_name = PyUnicode_InternFromString("add_packed")) == NULL ||
        (store_name = PyUnicode_InternFromString("_store")) == NULL ||
        (data_name = PyUnicode_InternFromString("data")) == NULL ||
        (open_batch_name = PyUnicode_InternFromString("_open_batch")) == NULL) {
        return -1;
    }
    return 0;
}

/* The stagers' state, unpacked once from the recorder's 8-tuple (`stagers(state)` makes
 * one; its stage_tx and stage_rx methods are what the recorder binds, and what the
 * session's lane calls natively): the three bytearrays, the payload store's holder, the
 * recorder's weak proxy, and the limits as numbers, so a frame is staged without
 * unpacking a tuple or converting an int object. */
typedef struct {
    PyObject_HEAD
    PyObject *stage, *tpos, *tval, *holder, *recorder;
    PyObject *open_blob, *open_ends; /* the open batch the counts below are for, or NULL */
    long long cap;
    Py_ssize_t flush_at, pack_min;
    Py_ssize_t open_rows; /* rows copied into open_blob not yet in its end and the room (sync) */
} Stager;

static PyTypeObject StagerType;

/* A Stager for `state` (checked), or NULL with an exception. */
static Stager *
stager_new(PyObject *state)
{
    if (stage_init(state) < 0) return NULL;
    PyObject *stage = PyTuple_GET_ITEM(state, 0), *tpos = PyTuple_GET_ITEM(state, 1);
    PyObject *tval = PyTuple_GET_ITEM(state, 2), *holder = PyTuple_GET_ITEM(state, 3);
    if (!PyByteArray_CheckExact(stage) || !PyByteArray_CheckExact(tpos) || !PyByteArray_CheckExact(tval)) {
        PyErr_SetString(PyExc_TypeError, "stage(): the staging buffers are bytearrays");
        return NULL;
    }
    if (!PyList_CheckExact(holder) || PyList_GET_SIZE(holder) != 5) {
        PyErr_SetString(PyExc_TypeError, "stage(): holder must be [list, int, run, blob, ends]");
        return NULL;
    }
    long long cap = PyLong_AsLongLong(PyTuple_GET_ITEM(state, 4));
    Py_ssize_t flush_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(state, 5));
    Py_ssize_t pack_min = PyLong_AsSsize_t(PyTuple_GET_ITEM(state, 7));
    if (PyErr_Occurred()) return NULL;
    Stager *s = PyObject_GC_New(Stager, &StagerType);
    if (s == NULL) return NULL;
    s->stage = Py_NewRef(stage);
    s->tpos = Py_NewRef(tpos);
    s->tval = Py_NewRef(tval);
    s->holder = Py_NewRef(holder);
    s->recorder = Py_NewRef(PyTuple_GET_ITEM(state, 6));
    s->open_blob = s->open_ends = NULL;
    s->open_rows = 0;
    s->cap = cap;
    s->flush_at = flush_at;
    s->pack_min = pack_min;
    PyObject_GC_Track(s);
    return s;
}

/* The store's tail (borrowed) and its room, the rows counted here and not yet synced
 * taken off, checked: the holder is the store's, which Python may refill (`clear`) but
 * keeps a 5-list. NULL with an exception. */
static PyObject *
stager_tail(Stager *s, Py_ssize_t *room)
{
    PyObject *holder = s->holder;
    if (PyList_GET_SIZE(holder) != 5 || !PyList_CheckExact(PyList_GET_ITEM(holder, 0))) {
        PyErr_SetString(PyExc_TypeError, "stage(): holder must be [list, int, run, blob, ends]");
        return NULL;
    }
    *room = PyLong_AsSsize_t(PyList_GET_ITEM(holder, 1));
    if (*room == -1 && PyErr_Occurred()) return NULL;
    *room -= s->open_rows;
    return PyList_GET_ITEM(holder, 0);
}

/* Packing. A payload of at most PACK_LENGTH_MAX bytes kept whole is copied into the open
 * batch of the store's run of packed batches (holder[3], a bytearray; holder[4] the run's
 * `ends`) instead of being kept as an object of its own: the frame's payload object is
 * then freed as soon as the application drops it. Keeping every small payload object
 * alive was most of what recording cost (fresh memory for each: in the timeline
 * benchmark's pipelined echo, run in one process and alternated with a version that kept
 * none, recording's share fell from 12-28% to 1-8%). The rows copied in are counted here
 * and added to the batch's end and the store's room by `sync`, which the store calls
 * before it reads or changes anything (`_PayloadStore._sync`). The batch is open while it
 * is the store's last (the tail is empty), not exported (a trim's view) and under BLOB_MAX
 * bytes; the store opens another (`Recorder._open_batch`) when a frame would join a
 * closed one, sealing a tail of single payloads first, unless that tail is shorter than
 * SEAL_AT (then the frame joins the tail: a mix of small and large payloads does not make
 * a run per frame). */
#define PACK_LENGTH_MAX 512
#define BLOB_MAX 65536
#define BLOB_FIRST 1024
#define SEAL_AT 32
#define JOINED_KEPT 4096 /* a reader's joined payloads of this many bytes or more: their own batch */

/* The counted rows into the open batch's end and the store's room: 0, or -1. */
static int
stager_sync(Stager *s)
{
    if (s->open_rows == 0) return 0;
    PyObject *ends = s->open_ends;
    if (ends == NULL || !PyList_CheckExact(ends) || PyList_GET_SIZE(ends) == 0) {
        PyErr_SetString(PyExc_SystemError, "stage(): rows counted for no open batch");
        return -1;
    }
    Py_ssize_t last = PyList_GET_SIZE(ends) - 1;
    Py_ssize_t end = PyLong_AsSsize_t(PyList_GET_ITEM(ends, last));
    Py_ssize_t room = PyLong_AsSsize_t(PyList_GET_ITEM(s->holder, 1));
    if (PyErr_Occurred()) return -1;
    PyObject *new_end = PyLong_FromSsize_t(end + s->open_rows);
    PyObject *new_room = new_end == NULL ? NULL : PyLong_FromSsize_t(room - s->open_rows);
    if (new_room == NULL) {
        Py_XDECREF(new_end);
        return -1;
    }
    PyList_SetItem(ends, last, new_end); /* these steal the references */
    PyList_SetItem(s->holder, 1, new_room);
    s->open_rows = 0;
    return 0;
}

static PyObject *
stager_sync_method(Stager *s, PyObject *unused)
{
    if (stager_sync(s) < 0) return NULL;
    Py_RETURN_NONE;
}

/* The open batch if `add` more bytes may join it now, else NULL (*error set when with an
 * exception). */
static PyObject *
stager_open_blob(Stager *s, Py_ssize_t add, int *error)
{
    PyObject *holder = s->holder, *blob = PyList_GET_ITEM(holder, 3);
    *error = 0;
    if (!PyByteArray_CheckExact(blob) || ((PyByteArrayObject *)blob)->ob_exports != 0) return NULL;
    if (PyList_GET_SIZE(PyList_GET_ITEM(holder, 0)) != 0) return NULL;
    if (PyByteArray_GET_SIZE(blob) != 0 && PyByteArray_GET_SIZE(blob) + add > BLOB_MAX) return NULL;
    if (blob != s->open_blob) { /* a batch the store opened since: counts start over */
        if (stager_sync(s) < 0) { /* (nothing to sync: the store synced before it changed) */
            *error = 1;
            return NULL;
        }
        PyObject *ends = PyList_GET_ITEM(holder, 4);
        if (!PyList_CheckExact(ends) || PyList_GET_SIZE(ends) == 0) return NULL;
        Py_XSETREF(s->open_blob, Py_NewRef(blob));
        Py_XSETREF(s->open_ends, Py_NewRef(ends));
    }
    return blob;
}

/* `n` bytes at `data` for `rows` rows join the open batch `blob` (from stager_open_blob).
 * Its buffer grows by doubling (from BLOB_FIRST bytes), not by a bytearray's eighth. */
static int
stager_pack(Stager *s, PyObject *blob, const char *data, Py_ssize_t n, Py_ssize_t rows)
{
    PyByteArrayObject *b = (PyByteArrayObject *)blob;
    Py_ssize_t at = Py_SIZE(b);
    if (n > 0) {
        if ((b->ob_start - b->ob_bytes) + at + n >= b->ob_alloc) {
            Py_ssize_t want = b->ob_alloc * 2 > BLOB_FIRST ? b->ob_alloc * 2 : BLOB_FIRST;
            if (want > BLOB_MAX + 1) want = BLOB_MAX + 1; /* a batch holds at most BLOB_MAX bytes ... */
            if (want < at + n + 1) want = at + n + 1; /* ... but takes a longer first join whole */
            if (PyByteArray_Resize(blob, want) < 0) return -1;
            Py_SET_SIZE(b, at); /* the room stays allocated */
            b->ob_start[at] = '\0';
        }
        memcpy(b->ob_start + at, data, (size_t)n);
        Py_SET_SIZE(b, at + n);
        b->ob_start[at + n] = '\0'; /* a bytearray's trailing NUL */
    }
    s->open_rows += rows;
    return 0;
}

/* The open batch for `add` bytes, opened when it must be (`seal_at`: the longest tail of
 * single payloads a batch waits for; 0: it never waits). NULL with *error 0: the payload
 * joins the tail. */
static PyObject *
stager_batch(Stager *s, Py_ssize_t add, Py_ssize_t seal_at, int *error)
{
    PyObject *blob = stager_open_blob(s, add, error);
    if (blob != NULL || *error) return blob;
    Py_ssize_t tail = PyList_GET_SIZE(PyList_GET_ITEM(s->holder, 0));
    if (tail != 0 && tail < seal_at) return NULL;
    if (call_back(s->recorder, open_batch_name) < 0) { /* the store syncs first */
        *error = 1;
        return NULL;
    }
    if (PyList_GET_SIZE(s->holder) != 5) {
        PyErr_SetString(PyExc_TypeError, "stage(): holder must be [list, int, run, blob, ends]");
        *error = 1;
        return NULL;
    }
    return stager_open_blob(s, add, error);
}

/* One frame staged, as Recorder._stage_tx stages it: `stamped` says whether `t_ns` is the
 * frame's timestamp (else: the one before it), `code` is not a compressed frame's. 0, or
 * -1 with an exception. (The session's lane calls it with the numbers it has, no int
 * objects made.) */
static int
stager_stage(Stager *s, int stamped, long long t_ns, long long code, PyObject *payload)
{
    if (stamped) {
        Py_ssize_t n = Py_SIZE(s->stage) >> 3;
        if (n >= s->flush_at) {
            if (call_back(s->recorder, flush_name) < 0) return -1;
            n = Py_SIZE(s->stage) >> 3;
        }
        if (append8(s->tpos, n) < 0 || append8(s->tval, t_ns) < 0) return -1;
    }
    if (append8(s->stage, code) < 0) return -1;
    /* Read after a flush (which may run Python): the store's current tail and its room. */
    Py_ssize_t room;
    PyObject *payloads = stager_tail(s, &room);
    if (payloads == NULL) return -1;
    long long length = code >> 16;
    int whole = length <= s->cap || (code & 8); /* control frames (opcode bit 3) are kept whole */
    if (whole && length <= PACK_LENGTH_MAX && PyBytes_CheckExact(payload) && PyBytes_GET_SIZE(payload) == length) {
        int error;
        PyObject *blob = stager_batch(s, (Py_ssize_t)length, SEAL_AT, &error);
        if (error) return -1;
        if (blob != NULL) {
            if (stager_pack(s, blob, PyBytes_AS_STRING(payload), (Py_ssize_t)length, 1) < 0) return -1;
            if ((payloads = stager_tail(s, &room)) == NULL) return -1;
            if (PyList_GET_SIZE(payloads) > room && call_back(s->recorder, trim_name) < 0) return -1;
            return 0;
        }
        if ((payloads = stager_tail(s, &room)) == NULL) return -1; /* after the call, if one ran */
    }
    if (whole) {
        if (PyList_Append(payloads, payload) < 0) return -1;
    }
    else {
        PyObject *head = PySequence_GetSlice(payload, 0, (Py_ssize_t)s->cap);
        if (head == NULL) return -1;
        int bad = PyList_Append(payloads, head);
        Py_DECREF(head);
        if (bad < 0) return -1;
    }
    if (PyList_GET_SIZE(payloads) > room && call_back(s->recorder, trim_name) < 0) return -1;
    return 0;
}

/* stage_tx(t_ns, code, payload): Recorder._stage_tx (the reference), a compressed frame's
 * by calling it. */
static PyObject *
stager_tx(Stager *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "stage_tx() takes 3 arguments");
        return NULL;
    }
    PyObject *t_ns = args[0], *code_obj = args[1], *payload = args[2];
    long long code = PyLong_AsLongLong(code_obj);
    long long t = t_ns == Py_None ? 0 : PyLong_AsLongLong(t_ns);
    if (PyErr_Occurred()) return NULL;
    if (code & (1 << 9)) { /* COMPRESSED: the Python reference does it */
        return PyObject_CallMethodObjArgs(s->recorder, stage_tx_name, t_ns, code_obj, payload, NULL);
    }
    if (stager_stage(s, t_ns != Py_None, t, code, payload) < 0) return NULL;
    Py_RETURN_NONE;
}

/* A batch handed to Recorder._stage_rx, the reference. */
static PyObject *
stager_rx_reference(Stager *s, PyObject *t_ns, PyObject *codes, PyObject *frames, PyObject *compressed, PyObject *joined)
{
    PyObject *call[6] = {s->recorder, t_ns, codes, frames, compressed == NULL ? Py_False : compressed, joined};
    return PyObject_VectorcallMethod(stage_rx_name, call, 6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* stage_rx(t_ns, codes, frames, compressed=0, joined=None): Recorder._stage_rx (the
 * reference): one frame as stage_tx stages it; a batch of small frames whose payloads
 * the reader joined (`joined`) joins the open run in a few calls; anything else goes to
 * the reference. */
static PyObject *
stager_rx(Stager *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "stage_rx() takes 3 to 5 arguments");
        return NULL;
    }
    PyObject *t_ns = args[0], *codes = args[1], *frames = args[2];
    PyObject *compressed = nargs > 3 ? args[3] : NULL, *joined = nargs > 4 ? args[4] : Py_None;
    PyObject *recorder = s->recorder;
    int squeezed = compressed == NULL ? 0 : PyObject_IsTrue(compressed);
    if (squeezed < 0) return NULL;
    Py_ssize_t n = PyObject_Length(codes);
    if (n < 0) return NULL;
    if (n == 1 && !squeezed) { /* one frame (a request's answer): as stage_tx stages it */
        PyObject *code = PySequence_GetItem(codes, 0);
        PyObject *frame = code == NULL ? NULL
                          : PyList_CheckExact(frames) ? Py_NewRef(PyList_GET_ITEM(frames, 0))
                                                      : PySequence_GetItem(frames, 0);
        PyObject *data = frame == NULL ? NULL : PyObject_GetAttr(frame, data_name);
        PyObject *r = NULL;
        if (data != NULL) {
            PyObject *call[3] = {t_ns, code, data};
            r = stager_tx(s, call, 3);
        }
        Py_XDECREF(code);
        Py_XDECREF(frame);
        Py_XDECREF(data);
        return r;
    }
    if (n == 0) Py_RETURN_NONE;
    PyObject *holder = s->holder;
    if (squeezed || joined == Py_None || n < s->pack_min || PyList_GET_SIZE(holder) != 5 ||
        !PyObject_CheckBuffer(codes)) {
        return stager_rx_reference(s, t_ns, codes, frames, compressed, joined);
    }
    PyObject *stage = s->stage;
    {
        /* The reader's codes, an array('q'): their int64s appended as they are, unless a
         * payload is longer than the cap (lowered since the reader was told how long a
         * payload it may join): the reference caps them. */
        Py_buffer view;
        if (PyObject_GetBuffer(codes, &view, PyBUF_FORMAT) < 0) return NULL;
        if (view.itemsize != 8 || view.format == NULL || strcmp(view.format, "q") != 0) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError, "stage_rx(): codes must be an array('q')");
            return NULL;
        }
        const int64_t *c = (const int64_t *)view.buf;
        long long longest = 0;
        for (Py_ssize_t i = 0; i < view.len / 8; i++) {
            if (c[i] > longest) longest = c[i];
        }
        if ((longest >> 16) > s->cap) {
            PyBuffer_Release(&view);
            return stager_rx_reference(s, t_ns, codes, frames, compressed, joined);
        }
        Py_ssize_t at = PyByteArray_GET_SIZE(stage);
        int bad = append8(s->tpos, at >> 3) < 0 || append_obj(s->tval, t_ns) < 0 ||
                  PyByteArray_Resize(stage, at + view.len) < 0;
        if (!bad) memcpy(PyByteArray_AS_STRING(stage) + at, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
        if (bad) return NULL;
    }
    /* The payloads: copied into the open batch (opened if need be) when they are few
     * bytes; a larger joined buffer (a flood's read) is kept as a batch of its own, the
     * reader's buffer handed over with no copy. */
    Py_ssize_t size = -1;
    const char *bytes = NULL;
    if (PyByteArray_CheckExact(joined)) {
        size = PyByteArray_GET_SIZE(joined);
        bytes = PyByteArray_AS_STRING(joined);
    }
    else if (PyBytes_CheckExact(joined)) {
        size = PyBytes_GET_SIZE(joined);
        bytes = PyBytes_AS_STRING(joined);
    }
    if (size >= 0 && size < JOINED_KEPT) {
        int error;
        PyObject *blob = stager_batch(s, size, 0, &error); /* (runs no code that touches `joined`) */
        if (error) return NULL;
        if (blob != NULL) {
            if (stager_pack(s, blob, bytes, size, n) < 0) return NULL;
            goto staged;
        }
    }
    /* Else the batch joins the open run as a blob of its own (the tail is empty), or the
     * store starts a new run. */
    if (stager_sync(s) < 0) return NULL;
    PyObject *tail = PyList_GET_ITEM(holder, 0), *run = PyList_GET_ITEM(holder, 2);
    if (!PyList_CheckExact(tail)) {
        PyErr_SetString(PyExc_TypeError, "stage_rx(): holder must be [list, int, run, blob, ends]");
        return NULL;
    }
    PyObject *n_obj = PyLong_FromSsize_t(n);
    if (n_obj == NULL) return NULL;
    if (PyList_GET_SIZE(tail) == 0 && run != Py_None) {
        PyObject *blobs = PyObject_GetAttr(run, blobs_name);
        PyObject *ends = blobs == NULL ? NULL : PyObject_GetAttr(run, ends_name);
        int bad = ends == NULL || !PyList_CheckExact(blobs) || !PyList_CheckExact(ends) || PyList_GET_SIZE(ends) == 0;
        if (!bad) {
            Py_ssize_t end = PyLong_AsSsize_t(PyList_GET_ITEM(ends, PyList_GET_SIZE(ends) - 1));
            Py_ssize_t room = PyLong_AsSsize_t(PyList_GET_ITEM(holder, 1));
            PyObject *new_end = PyErr_Occurred() ? NULL : PyLong_FromSsize_t(end + n);
            PyObject *new_room = new_end == NULL ? NULL : PyLong_FromSsize_t(room - n);
            bad = new_room == NULL || PyList_Append(blobs, joined) < 0 || PyList_Append(ends, new_end) < 0;
            if (!bad) {
                PyList_SetItem(holder, 1, new_room); /* steals the reference */
                new_room = NULL;
                /* The open batch, if any, is no longer the run's last. */
                Py_INCREF(Py_None);
                PyList_SetItem(holder, 3, Py_None);
                Py_INCREF(Py_None);
                PyList_SetItem(holder, 4, Py_None);
            }
            Py_XDECREF(new_end);
            Py_XDECREF(new_room);
        }
        else if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "stage_rx(): the open run has no batch");
        }
        Py_XDECREF(blobs);
        Py_XDECREF(ends);
        if (bad) {
            Py_DECREF(n_obj);
            return NULL;
        }
    }
    else {
        PyObject *store = PyObject_GetAttr(recorder, store_name);
        PyObject *r = NULL;
        if (store != NULL) {
            PyObject *call[3] = {store, joined, n_obj};
            r = PyObject_VectorcallMethod(add_packed_name, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            Py_DECREF(store);
        }
        if (r == NULL) {
            Py_DECREF(n_obj);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(n_obj);
staged:;
    /* As the reference ends: trim when the store is over capacity, else flush when the
     * stage is full. (Read after add_packed, which may have replaced the tail.) */
    Py_ssize_t room;
    PyObject *tail_now = stager_tail(s, &room);
    if (tail_now == NULL) return NULL;
    if (PyList_GET_SIZE(tail_now) > room) {
        if (call_back(recorder, trim_name) < 0) return NULL;
    }
    else {
        if ((Py_SIZE(stage) >> 3) >= s->flush_at && call_back(recorder, flush_name) < 0) return NULL;
    }
    Py_RETURN_NONE;
}


/* set_payload_cap(n): the cap from the next frame on (Recorder.payload_cap's setter: the
 * stagers bound elsewhere, the session's lane among them, see it at once). */
static PyObject *
stager_set_payload_cap(Stager *s, PyObject *value)
{
    long long cap = PyLong_AsLongLong(value);
    if (cap == -1 && PyErr_Occurred()) return NULL;
    s->cap = cap < 0 ? 0 : cap;
    Py_RETURN_NONE;
}

static PyMethodDef stager_methods[] = {
    {"sync", (PyCFunction)stager_sync_method, METH_NOARGS,
     "sync(): the rows copied into the open batch, into its end and the store's room."},
    {"set_payload_cap", (PyCFunction)stager_set_payload_cap, METH_O,
     "set_payload_cap(n): the payload cap from the next frame on."},
    {"stage_tx", (PyCFunction)(void (*)(void))stager_tx, METH_FASTCALL,
     "stage_tx(t_ns, code, payload): the recorder's stage_tx."},
    {"stage_rx", (PyCFunction)(void (*)(void))stager_rx, METH_FASTCALL,
     "stage_rx(t_ns, codes, frames, compressed=0, joined=None): the recorder's stage_rx."},
    {NULL, NULL, 0, NULL},
};

static int
stager_traverse(Stager *s, visitproc visit, void *arg)
{
    Py_VISIT(s->stage);
    Py_VISIT(s->tpos);
    Py_VISIT(s->tval);
    Py_VISIT(s->holder);
    Py_VISIT(s->recorder);
    Py_VISIT(s->open_blob);
    Py_VISIT(s->open_ends);
    return 0;
}

static int
stager_clear(Stager *s)
{
    Py_CLEAR(s->stage);
    Py_CLEAR(s->tpos);
    Py_CLEAR(s->tval);
    Py_CLEAR(s->holder);
    Py_CLEAR(s->recorder);
    Py_CLEAR(s->open_blob);
    Py_CLEAR(s->open_ends);
    return 0;
}

static void
stager_dealloc(Stager *s)
{
    PyObject_GC_UnTrack(s);
    stager_clear(s);
    PyObject_GC_Del(s);
}

static PyTypeObject StagerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rawws_nb._speedups.Stager",
    .tp_basicsize = sizeof(Stager),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A recorder's stagers, made by stagers(state).",
    .tp_dealloc = (destructor)stager_dealloc,
    .tp_traverse = (traverseproc)stager_traverse,
    .tp_clear = (inquiry)stager_clear,
    .tp_methods = stager_methods,
};

/* stagers(state) -> (stage_tx, stage_rx): the two, methods of one Stager made from
 * `state` (one call per frame, nothing unpacked per frame). */
static PyObject *
speedups_stagers(PyObject *module, PyObject *state)
{
    Stager *s = stager_new(state);
    if (s == NULL) return NULL;
    PyObject *tx = PyObject_GetAttrString((PyObject *)s, "stage_tx");
    PyObject *rx = tx == NULL ? NULL : PyObject_GetAttrString((PyObject *)s, "stage_rx");
    PyObject *pair = rx == NULL ? NULL : PyTuple_Pack(2, tx, rx);
    Py_XDECREF(tx);
    Py_XDECREF(rx);
    Py_DECREF(s);
    return pair;
}

/* stage(state, t_ns, code, payload) and stage_rx(state, t_ns, codes, frames, ...): the
 * same, for a state given each time. */
static PyObject *
speedups_stage(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "stage() takes 4 arguments");
        return NULL;
    }
    Stager *s = stager_new(args[0]);
    if (s == NULL) return NULL;
    PyObject *r = stager_tx(s, args + 1, 3);
    Py_DECREF(s);
    return r;
}

static PyObject *
speedups_stage_rx(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4 || nargs > 6) {
        PyErr_SetString(PyExc_TypeError, "stage_rx() takes 4 to 6 arguments");
        return NULL;
    }
    Stager *s = stager_new(args[0]);
    if (s == NULL) return NULL;
    PyObject *r = stager_rx(s, args + 1, nargs - 1);
    Py_DECREF(s);
    return r;
}

/* Strict UTF-8 (as bytes.decode("utf-8") accepts it: no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
static int
utf8_valid(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
        }
        else if (c >= 0xC2 && c <= 0xDF) {
            if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80) return 0;
            i += 2;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            if (i + 2 >= n) return 0;
            unsigned char c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80) return 0;
            if (c == 0xE0 && c1 < 0xA0) return 0; /* overlong */
            if (c == 0xED && c1 > 0x9F) return 0; /* surrogate */
            i += 3;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            if (i + 3 >= n) return 0;
            unsigned char c1 = s[i + 1];
            if ((c1 & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 || (s[i + 3] & 0xC0) != 0x80) return 0;
            if (c == 0xF0 && c1 < 0x90) return 0; /* overlong */
            if (c == 0xF4 && c1 > 0x8F) return 0; /* above U+10FFFF */
            i += 4;
        }
        else {
            return 0;
        }
    }
    return 1;
}

static PyObject *
speedups_utf8_valid(PyObject *module, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int ok = utf8_valid((const unsigned char *)b.buf, b.len);
    PyBuffer_Release(&b);
    return PyBool_FromLong(ok);
}

static PyObject *
speedups_configure(PyObject *module, PyObject *args)
{
    PyObject *d, *f, *e;
    if (!PyArg_ParseTuple(args, "OOO:configure", &d, &f, &e)) {
        return NULL;
    }
    if (Py_TYPE(d)->tp_descr_set == NULL || Py_TYPE(f)->tp_descr_set == NULL || Py_TYPE(e)->tp_descr_set == NULL) {
        PyErr_SetString(PyExc_TypeError, "configure() takes the Frame class's data, fin and _ext slot descriptors");
        return NULL;
    }
    if (zero == NULL && (zero = PyLong_FromLong(0)) == NULL) {
        return NULL;
    }
    if (frombytes_name == NULL && (frombytes_name = PyUnicode_InternFromString("frombytes")) == NULL) {
        return NULL;
    }
    Py_INCREF(d);
    Py_INCREF(f);
    Py_INCREF(e);
    Py_XSETREF(data_descr, d);
    Py_XSETREF(fin_descr, f);
    Py_XSETREF(ext_descr, e);
    Py_RETURN_NONE;
}

/* read_simple's parse (its description at the top), shared with the session lane. */
typedef struct {
    const unsigned char *p;
    Py_ssize_t pos, end; /* data[pos:end] is parsed; pos ends after the last frame taken */
    int masked;
    long long max_frame, max_msg; /* -1: no limit */
    Py_ssize_t count;             /* at most this many frames */
    PyTypeObject *text_cls, *binary_cls;
    uint64_t tag;
    PyObject *frames; /* a list the frames are appended to */
    uint64_t *codes;  /* their header codes: `local` (code_cap entries) at first, grown as needed */
    uint64_t *local;
    Py_ssize_t code_cap;
    PyObject *joined; /* a bytearray or NULL; join_at: bytes used, join_room: its size */
    Py_ssize_t join_at, join_room;
    long long join_max;
    long long longest; /* the longest payload taken, -1: none */
} SimpleParse;

/* Frames taken (>= 0), or -1 with an exception set (s->codes may then be grown: the
 * caller frees it when it is not s->local). */
static Py_ssize_t
parse_simple(SimpleParse *s)
{
    descrsetfunc set_data = Py_TYPE(data_descr)->tp_descr_set;
    descrsetfunc set_fin = Py_TYPE(fin_descr)->tp_descr_set;
    descrsetfunc set_ext = Py_TYPE(ext_descr)->tp_descr_set;
    const unsigned char *p = s->p;
    const Py_ssize_t end = s->end;
    const int masked = s->masked;
    Py_ssize_t pos = s->pos, taken = 0;
    while (taken < s->count && end - pos >= 2) {
        unsigned int b0 = p[pos], b1 = p[pos + 1];
        if ((b0 & 0xF0) != 0x80) break; /* fin, no rsv bit */
        unsigned int opcode = b0 & 0x0F;
        if (opcode != 1 && opcode != 2) break;
        if (((b1 & 0x80) != 0) != (masked != 0)) break;
        unsigned long long length = b1 & 0x7F;
        Py_ssize_t head = 2;
        if (length == 126) {
            if (end - pos < 4) break;
            length = ((unsigned long long)p[pos + 2] << 8) | p[pos + 3];
            if (length < 126) break;
            head = 4;
        }
        else if (length == 127) {
            if (end - pos < 10) break;
            length = 0;
            for (int i = 0; i < 8; i++) {
                length = (length << 8) | p[pos + 2 + i];
            }
            if ((length >> 63) || length < 65536) break;
            head = 10;
        }
        if (masked) head += 4;
        if (s->max_frame >= 0 && length > (unsigned long long)s->max_frame) break;
        if (s->max_msg >= 0 && length > (unsigned long long)s->max_msg) break;
        if (end - pos < head || (unsigned long long)(end - pos - head) < length) break; /* incomplete */
        const unsigned char *src = p + pos + head;
        Py_ssize_t n = (Py_ssize_t)length;
        PyObject *payload;
        if (masked) {
            payload = PyBytes_FromStringAndSize(NULL, n);
            if (payload == NULL) return -1;
            xor_mask((unsigned char *)PyBytes_AS_STRING(payload), src, n, src - 4);
            src = (const unsigned char *)PyBytes_AS_STRING(payload);
        }
        else {
            payload = PyBytes_FromStringAndSize((const char *)src, n);
            if (payload == NULL) return -1;
        }
        if (opcode == 1 && !utf8_valid(src, n)) {
            Py_DECREF(payload);
            break; /* the Python reader reports it */
        }
        PyTypeObject *cls = opcode == 1 ? s->text_cls : s->binary_cls;
        PyObject *frame = cls->tp_alloc(cls, 0);
        if (frame == NULL) {
            Py_DECREF(payload);
            return -1;
        }
        int bad = set_data(data_descr, frame, payload) < 0 || set_fin(fin_descr, frame, Py_True) < 0 ||
                  set_ext(ext_descr, frame, zero) < 0;
        if (!bad && s->joined != NULL && s->longest <= s->join_max && (long long)n <= s->join_max) {
            if (s->join_at + n > s->join_room) {
                s->join_room = 2 * (s->join_at + n);
                bad = PyByteArray_Resize(s->joined, s->join_room) < 0;
            }
            if (!bad) {
                memcpy(PyByteArray_AS_STRING(s->joined) + s->join_at, src, n);
                s->join_at += n;
            }
        }
        Py_DECREF(payload);
        if (bad) {
            Py_DECREF(frame);
            return -1;
        }
        /* A frame holds only bytes and bools: it can be in no reference cycle. */
        if (PyObject_IS_GC(frame)) {
            PyObject_GC_UnTrack(frame);
        }
        if (PyList_Append(s->frames, frame) < 0) {
            Py_DECREF(frame);
            return -1;
        }
        Py_DECREF(frame);
        if (taken == s->code_cap) {
            Py_ssize_t bigger = s->code_cap * 4;
            uint64_t *grown = PyMem_Malloc(bigger * sizeof(uint64_t));
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            memcpy(grown, s->codes, taken * sizeof(uint64_t));
            if (s->codes != s->local) PyMem_Free(s->codes);
            s->codes = grown;
            s->code_cap = bigger;
        }
        s->codes[taken] = (length << 16) | s->tag | b0;
        if ((long long)n > s->longest) s->longest = (long long)n;
        pos += head + n;
        taken++;
        s->pos = pos;
    }
    return taken;
}

static PyObject *
speedups_read_simple(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "read_simple() takes 13 arguments");
        return NULL;
    }
    if (data_descr == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "read_simple() before configure()");
        return NULL;
    }
    PyObject *data = args[0];
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "read_simple() needs bytes");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    int masked = PyObject_IsTrue(args[2]);
    long long max_frame = PyLong_AsLongLong(args[3]);
    long long max_msg = PyLong_AsLongLong(args[4]);
    Py_ssize_t count = PyLong_AsSsize_t(args[5]);
    PyObject *text_cls = args[6];
    PyObject *binary_cls = args[7];
    unsigned long long tag = PyLong_AsUnsignedLongLong(args[8]);
    PyObject *frames = args[9];
    PyObject *codes = args[10];
    PyObject *joined = args[11];
    long long join_max = PyLong_AsLongLong(args[12]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (!PyType_Check(text_cls) || !PyType_Check(binary_cls) || !PyList_CheckExact(frames)) {
        PyErr_SetString(PyExc_TypeError, "read_simple(): frame classes and a list expected");
        return NULL;
    }
    if (joined == Py_None) {
        joined = NULL;
    }
    else if (!PyByteArray_CheckExact(joined)) {
        PyErr_SetString(PyExc_TypeError, "read_simple(): joined must be a bytearray or None");
        return NULL;
    }
    if (pos < 0) {
        pos = 0;
    }
    uint64_t local[512]; /* the codes, gathered here and added to the array at the end (one call) */
    SimpleParse s = {
        .p = (const unsigned char *)PyBytes_AS_STRING(data),
        .pos = pos,
        .end = PyBytes_GET_SIZE(data),
        .masked = masked,
        .max_frame = max_frame,
        .max_msg = max_msg,
        .count = count,
        .text_cls = (PyTypeObject *)text_cls,
        .binary_cls = (PyTypeObject *)binary_cls,
        .tag = (uint64_t)tag,
        .frames = frames,
        .codes = local,
        .local = local,
        .code_cap = 512,
        .joined = joined,
        .join_max = join_max,
        .longest = -1,
    };
    PyObject *result = NULL;
    if (joined != NULL) {
        /* `joined` grows to room for a few KiB first (a large buffer would be mapped and
           unmapped each time), doubled as needed, and is cut back to what was used at the end. */
        Py_ssize_t rest = s.end - pos;
        s.join_at = PyByteArray_GET_SIZE(joined);
        s.join_room = rest < 8192 ? rest : 8192;
        if (PyByteArray_Resize(joined, s.join_at + s.join_room) < 0) {
            return NULL;
        }
        s.join_room += s.join_at;
    }
    Py_ssize_t taken = parse_simple(&s);
    if (taken < 0) goto error;
    if (taken) {
        /* codes.frombytes(...), by an interned name: no format string, no name lookup per call. */
        PyObject *raw = PyBytes_FromStringAndSize((const char *)s.codes, (Py_ssize_t)(taken * sizeof(uint64_t)));
        if (raw == NULL) goto error;
        PyObject *r = PyObject_CallMethodOneArg(codes, frombytes_name, raw);
        Py_DECREF(raw);
        if (r == NULL) goto error;
        Py_DECREF(r);
    }
    if (joined != NULL && PyByteArray_Resize(joined, s.join_at) < 0) {
        goto error;
    }
    {
        PyObject *at = PyLong_FromSsize_t(s.pos);
        PyObject *most = at == NULL ? NULL : PyLong_FromLongLong(s.longest);
        if (most != NULL) {
            result = PyTuple_Pack(2, at, most);
        }
        Py_XDECREF(at);
        Py_XDECREF(most);
    }
error:
    if (s.codes != local) PyMem_Free(s.codes);
    return result;
}

/* flush_rows(stage, next_msg, open0, open1)
 *   -> (code, length, msg, next_msg, open0, open1, last0, last1), or None
 * The recorder's flush (rawws_nb/timeline/recorder.py, `Recorder._flush_numpy`, the
 * reference) for the columns of a compact chunk: `stage` holds header codes (array('q'));
 * `code` is each row's low 16 bits (u2), `length` its length (u2 when every length fits,
 * else u4), `msg` its message number less `next_msg` as given (i4), or None when there
 * is no continuation frame (row i is message next_msg + i). None instead of the tuple,
 * and nothing done, when a length does not fit in 32 bits or a message number in 32
 * bits from `next_msg` (the numpy code keeps those in 64 bits). The timestamps stay
 * with the recorder (runs, as staged).
 * Every frame but a continuation starts a message; a continuation belongs to its
 * direction's last data message (`open0`/`open1`, -1: none). `last0`/`last1`: (message,
 * opcode) of the last data message started here per direction, or None. */
/* The low `width` bytes of `value`, little-endian. */
static inline void
put_le(unsigned char *out, uint64_t value, int width)
{
#if PY_LITTLE_ENDIAN
    memcpy(out, &value, (size_t)width);
#else
    for (int b = 0; b < width; b++) out[b] = (unsigned char)(value >> (8 * b));
#endif
}

static PyObject *
speedups_flush_rows(PyObject *module, PyObject *args)
{
    Py_buffer stage;
    long long next_msg, open_[2];
    if (!PyArg_ParseTuple(args, "y*LLL:flush_rows", &stage, &next_msg, &open_[0], &open_[1])) {
        return NULL;
    }
    PyObject *code_col = NULL, *len_col = NULL, *msg_col = NULL, *result = NULL;
    Py_ssize_t k = stage.len / 8;
    const int64_t *codes = (const int64_t *)stage.buf;
    const long long base = next_msg;
    long long last_msg[2] = {-1, -1}, last_op[2] = {0, 0};
    /* First the widths: u2 lengths when they all fit; message numbers only when a
     * continuation frame is there. */
    int64_t longest = 0;
    int continued = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        int64_t length = codes[i] >> 16;
        if (length > longest || length < 0) longest = length < 0 ? INT64_MAX : length;
        if ((codes[i] & 0x0F) == 0) continued = 1;
    }
    if (longest > (int64_t)UINT32_MAX) {
        result = Py_NewRef(Py_None); /* the numpy code does this flush */
        goto done;
    }
    const int wide = longest > 0xFFFF;
    code_col = PyBytes_FromStringAndSize(NULL, k * 2);
    len_col = PyBytes_FromStringAndSize(NULL, k * (wide ? 4 : 2));
    msg_col = continued ? PyBytes_FromStringAndSize(NULL, k * 4) : Py_NewRef(Py_None);
    if (code_col == NULL || len_col == NULL || msg_col == NULL) goto done;
    unsigned char *oc = (unsigned char *)PyBytes_AS_STRING(code_col);
    unsigned char *ol = (unsigned char *)PyBytes_AS_STRING(len_col);
    unsigned char *om = continued ? (unsigned char *)PyBytes_AS_STRING(msg_col) : NULL;
    if (!continued) {
        /* Every frame starts the next message (the common case): the columns in one
         * simple pass, and each direction's last data message found from the end. */
        for (Py_ssize_t i = 0; i < k; i++) {
            put_le(oc + 2 * i, (uint64_t)(codes[i] & 0xFFFF), 2);
        }
        if (wide) {
            for (Py_ssize_t i = 0; i < k; i++) put_le(ol + 4 * i, (uint64_t)(codes[i] >> 16), 4);
        }
        else {
            for (Py_ssize_t i = 0; i < k; i++) put_le(ol + 2 * i, (uint64_t)(codes[i] >> 16), 2);
        }
        for (Py_ssize_t i = k - 1; i >= 0 && (last_msg[0] < 0 || last_msg[1] < 0); i--) {
            int op = (int)(codes[i] & 0x0F), d = (int)((codes[i] >> 8) & 1);
            if ((op == 1 || op == 2) && last_msg[d] < 0) {
                last_msg[d] = open_[d] = base + i;
                last_op[d] = op;
            }
        }
        next_msg = base + k;
    }
    else for (Py_ssize_t i = 0; i < k; i++) {
        int64_t c = codes[i];
        int op = (int)(c & 0x0F), d = (int)((c >> 8) & 1);
        int64_t length = c >> 16, msg;
        if (op != 0) {
            msg = next_msg++;
            if (op == 1 || op == 2) {
                open_[d] = msg;
                last_msg[d] = msg;
                last_op[d] = op;
            }
        }
        else {
            msg = open_[d];
        }
        int64_t off = msg - base;
        if (off < INT32_MIN || off > INT32_MAX) {
            result = Py_NewRef(Py_None); /* the numpy code does this flush */
            goto done;
        }
        put_le(oc + 2 * i, (uint64_t)(c & 0xFFFF), 2);
        put_le(ol + (wide ? 4 : 2) * i, (uint64_t)length, wide ? 4 : 2);
        if (om != NULL) put_le(om + 4 * i, (uint64_t)(uint32_t)(int32_t)off, 4);
    }
    {
        PyObject *l0 = last_msg[0] >= 0 ? Py_BuildValue("(LL)", last_msg[0], last_op[0]) : Py_NewRef(Py_None);
        PyObject *l1 = last_msg[1] >= 0 ? Py_BuildValue("(LL)", last_msg[1], last_op[1]) : Py_NewRef(Py_None);
        if (l0 != NULL && l1 != NULL) {
            result = Py_BuildValue("(OOOLLLOO)", code_col, len_col, msg_col, next_msg, open_[0], open_[1], l0, l1);
        }
        Py_XDECREF(l0);
        Py_XDECREF(l1);
    }
done:
    Py_XDECREF(code_col);
    Py_XDECREF(len_col);
    Py_XDECREF(msg_col);
    PyBuffer_Release(&stage);
    return result;
}

/* PayloadBuffer(n): a bytes object of n bytes, writable through the buffer protocol until
 * take() hands it over (the reader's receive-into path: a front end reads a large frame's
 * payload straight into the bytes the frame will hold, with no copy after the socket's).
 * The buffer it exports holds a reference to the PayloadBuffer, so a memoryview on it
 * keeps the memory alive. Nobody sees the bytes object before take(). */
typedef struct {
    PyObject_HEAD
    PyObject *data; /* bytes, kept to the end: a view taken before take() never dangles */
    int taken;
} PayloadBuffer;

static PyObject *
payload_buffer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "n:PayloadBuffer", &n)) {
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "PayloadBuffer(n): n >= 0");
        return NULL;
    }
    PayloadBuffer *self = (PayloadBuffer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->data = PyBytes_FromStringAndSize(NULL, n);
    if (self->data == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
payload_buffer_dealloc(PayloadBuffer *self)
{
    Py_XDECREF(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
payload_buffer_getbuffer(PayloadBuffer *self, Py_buffer *view, int flags)
{
    if (self->taken) {
        PyErr_SetString(PyExc_BufferError, "PayloadBuffer: already taken");
        return -1;
    }
    return PyBuffer_FillInfo(view, (PyObject *)self, PyBytes_AS_STRING(self->data), PyBytes_GET_SIZE(self->data),
                             0, flags);
}

static PyObject *
payload_buffer_take(PayloadBuffer *self, PyObject *unused)
{
    if (self->taken) {
        PyErr_SetString(PyExc_RuntimeError, "PayloadBuffer: already taken");
        return NULL;
    }
    self->taken = 1; /* no new export can write into it */
    Py_INCREF(self->data);
    return self->data;
}

static PyMethodDef payload_buffer_methods[] = {
    {"take", (PyCFunction)payload_buffer_take, METH_NOARGS,
     "take() -> bytes: the filled bytes; no new buffer can be taken afterwards."},
    {NULL, NULL, 0, NULL},
};

static PyBufferProcs payload_buffer_as_buffer = {(getbufferproc)payload_buffer_getbuffer, NULL};

static PyTypeObject PayloadBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rawws_nb._speedups.PayloadBuffer",
    .tp_basicsize = sizeof(PayloadBuffer),
    .tp_dealloc = (destructor)payload_buffer_dealloc,
    .tp_as_buffer = &payload_buffer_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PayloadBuffer(n): n bytes to read into, then take() them as bytes.",
    .tp_methods = payload_buffer_methods,
    .tp_new = payload_buffer_new,
};

/* Lane(...): the session's per-frame path in C (rawws_nb/session.py, `RawSession._make_lane`):
 * what `RawSession._on_data` and `RawSession._send_nowait` do, for the one case that needs
 * no judgement; every other case is handed to them as it came (they stay the reference,
 * and the whole path when this module is not built or RAWWS_NB_PURE=1).
 *
 *   data_received(data): a read of fewer than 128 bytes that is whole frames of
 *     read_simple's shape (final Text or Binary, no rsv bit, masked as it must be, within
 *     the reader's limits, Text valid UTF-8), no more than `incoming` has room for, on an
 *     OPEN connection whose reader is between frames (nothing buffered or held, no
 *     fragmented message, no failure, nothing read into a buffer): the frames are
 *     recorded, put in `incoming`, the waiting consumers woken and reading paused at
 *     max_queue, as `_on_data` does. Anything else: `slow_data(data)`, from the start
 *     (what was parsed here is dropped).
 *
 *   send_nowait(frame, compress=True): a str (Text), bytes (Binary) or whole Text/Binary
 *     frame (fin, no rsv bit, not compressed: an echo) of at most `max_send` bytes, on an
 *     OPEN connection, no fragmented message being sent, nothing to compress
 *     and the transport not closing: the frame is built (masked on the client side with a
 *     key from the lane's own pool of os.urandom bytes), written or batched as
 *     `RawSession._written` decides (the first write of a loop turn goes out at once; the
 *     ones after it join conn._out until the next turn (`uncork`, scheduled with
 *     `call_soon`) or until `write_out` is due: a frame of `direct_write` bytes or more,
 *     `cork_limit` bytes waiting), and recorded, as `_send_nowait` does. A write at once
 *     goes straight to the socket with send(2) when `fd` >= 0 (asyncio's plain TCP
 *     transport) and the transport's buffer is empty, as the transport's write would
 *     first do; what send(2) did not take goes to transport.write. Anything else:
 *     `slow_send(frame, compress)`.
 *
 * The connection's, reader's and feed's attributes it reads are their slots, read at the
 * offsets found when the lane is made: the connection's `state`, `deflate`,
 * `_tx_msg_cls`, `_out` and `_out_size` (both written: a batched frame); the reader's
 * `_chunks`, `_held`, `_msg_cls`, `failed`, `_into`, `max_frame_size`,
 * `max_message_size`, and `controls`, `compressed`, `joined` (written to what a feed of
 * plain frames leaves); the feed's `paused`. The session's `_corked` and
 * `_uncork_pending` (written as `_written` writes them) and `max_queue` by name. */
#ifndef _WIN32
#include <sys/socket.h>
#include <sys/types.h>
#endif
#include <time.h>
#include "structmember.h"

enum {
    C_STATE, C_DEFLATE, C_TX_MSG_CLS, C_OUT, C_OUT_SIZE,
    R_CHUNKS, R_HELD, R_MSG_CLS, R_FAILED, R_INTO, R_MAX_FRAME, R_MAX_MESSAGE, R_CONTROLS, R_COMPRESSED, R_JOINED,
    F_PAUSED,
    N_SLOTS
};
static const char *const slot_names[N_SLOTS] = {
    "state", "deflate", "_tx_msg_cls", "_out", "_out_size",
    "_chunks", "_held", "_msg_cls", "failed", "_into", "max_frame_size", "max_message_size", "controls",
    "compressed", "joined",
    "paused",
};

typedef struct {
    PyObject_HEAD
    PyObject *session, *conn, *reader, *feed, *queue, *waiters;
    PyObject *stage_tx, *stage_rx; /* the recorder's, or None */
    PyObject *text_cls, *binary_cls, *open_state;
    PyObject *transport, *slow_data, *slow_send, *urandom, *time_ns;
    PyObject *pool; /* bytes: mask keys, 4 at a time from pool_pos */
    PyObject *tdict; /* asyncio's plain TCP transport's __dict__ (fd >= 0), or NULL */
    PyTypeObject *tbuffer_type; /* the type of its write buffer, `_buffer` */
    PyObject *rec_state; /* the compiled stagers' state (staged without int objects), or NULL */
    PyObject *call_soon, *uncork, *write_out; /* the loop's call_soon, the session's _uncork and _write_out */
    Py_ssize_t pool_pos, max_send, direct_write, cork_limit;
    Py_ssize_t off[N_SLOTS];
    Py_ssize_t frames_in, frames_out; /* frames this path received and sent itself */
    int fd, client;
    uint64_t tag;
} Lane;

static PyObject *n_uncork_pending, *n_corked, *n_max_queue, *n_extend, *n_done, *n_set_result;
static PyObject *n_pause_reading, *n_is_closing, *n_write, *n_get_write_buffer_size, *n_closing, *n_buffer;

static int
lane_names(void)
{
    if (n_write != NULL) return 0;
#define NAME(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    if (data_name == NULL) NAME(data_name, "data");
    NAME(n_uncork_pending, "_uncork_pending");
    NAME(n_corked, "_corked");
    NAME(n_max_queue, "max_queue");
    NAME(n_extend, "extend");
    NAME(n_done, "done");
    NAME(n_set_result, "set_result");
    NAME(n_pause_reading, "_pause_reading");
    NAME(n_is_closing, "is_closing");
    NAME(n_get_write_buffer_size, "get_write_buffer_size");
    NAME(n_closing, "_closing");
    NAME(n_buffer, "_buffer");
    NAME(n_write, "write");
#undef NAME
    return 0;
}

/* The offset of obj's slot `name` (a writable object slot of its class), or -1 with an exception. */
static Py_ssize_t
slot_offset(PyObject *obj, const char *name)
{
    PyObject *desc = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), name);
    if (desc == NULL) return -1;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(desc, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)desc)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY)) off = m->offset;
    }
    Py_DECREF(desc);
    if (off < 0) PyErr_Format(PyExc_TypeError, "Lane: %s.%s is not a slot", Py_TYPE(obj)->tp_name, name);
    return off;
}

/* A slot's value (borrowed; NULL when unset, without an exception). */
#define SLOT(lane, obj, i) (*(PyObject **)((char *)(obj) + (lane)->off[i]))

static void
slot_set(Lane *lane, PyObject *obj, int i, PyObject *value)
{
    PyObject **at = (PyObject **)((char *)obj + lane->off[i]);
    Py_XSETREF(*at, Py_NewRef(value));
}

/* A limit slot as a number: None -> -1; -2: not an int >= 0 (the Python path decides). */
static long long
slot_limit(PyObject *v)
{
    if (v == Py_None) return -1;
    if (v == NULL || !PyLong_CheckExact(v)) return -2;
    int overflow;
    long long r = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow > 0) return -1; /* beyond any frame */
    return r < 0 ? -2 : r;
}

/* 1: obj.name is true, 0: false, -1: error. */
static int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) return -1;
    int t = v == Py_True ? 1 : v == Py_False ? 0 : PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}


static int lane_done(PyObject *r);

/* time.time_ns(), as the Python path stamps frames, as a number; -1 with an exception. */
static long long
lane_now_ns(Lane *self)
{
#if defined(CLOCK_REALTIME) && !defined(_WIN32)
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
#endif
    PyObject *t = PyObject_CallNoArgs(self->time_ns);
    if (t == NULL) return -1;
    long long v = PyLong_AsLongLong(t);
    Py_DECREF(t);
    return v == -1 && PyErr_Occurred() ? -1 : v;
}

/* lane_now_ns() as an int object (for stagers that are not the compiled ones). */
static PyObject *
lane_now(Lane *self)
{
    long long t = lane_now_ns(self);
    return t == -1 && PyErr_Occurred() ? NULL : PyLong_FromLongLong(t);
}

/* Stages one frame with the recorder's stage_tx (stamped now when `stamped`): natively when its
 * stagers are the compiled ones. */
static int
lane_stage(Lane *self, int stamped, long long code, PyObject *payload)
{
    if (self->rec_state != NULL) {
        long long t = stamped ? lane_now_ns(self) : 0;
        if (t == -1 && PyErr_Occurred()) return -1;
        return stager_stage((Stager *)self->rec_state, stamped, t, code, payload);
    }
    PyObject *t = stamped ? lane_now(self) : Py_NewRef(Py_None);
    PyObject *c = t == NULL ? NULL : PyLong_FromLongLong(code);
    PyObject *r = NULL;
    if (c != NULL) {
        PyObject *args[3] = {t, c, payload};
        r = PyObject_Vectorcall(self->stage_tx, args, 3, NULL);
    }
    Py_XDECREF(t);
    Py_XDECREF(c);
    return lane_done(r);
}

static int
lane_done(PyObject *r)
{
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static int
lane_wake_one(PyObject *w)
{
    PyObject *done = PyObject_CallMethodNoArgs(w, n_done);
    if (done == NULL) return -1;
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done < 0) return -1;
    return is_done ? 0 : lane_done(PyObject_CallMethodOneArg(w, n_set_result, Py_None));
}

/* The futures waiting for a frame: those not done are set, and the list cleared (`_Feed.wake`). */
static int
lane_wake(Lane *self)
{
    PyObject *waiters = self->waiters;
    Py_ssize_t n = PyList_GET_SIZE(waiters);
    if (n == 1) { /* one consumer (the usual case) */
        PyObject *w = Py_NewRef(PyList_GET_ITEM(waiters, 0));
        int bad = PyList_SetSlice(waiters, 0, 1, NULL) < 0 || lane_wake_one(w) < 0;
        Py_DECREF(w);
        return bad ? -1 : 0;
    }
    PyObject *all = PyList_GetSlice(waiters, 0, n);
    if (all == NULL) return -1;
    int bad = PyList_SetSlice(waiters, 0, n, NULL) < 0;
    for (Py_ssize_t i = 0; !bad && i < PyList_GET_SIZE(all); i++) bad = lane_wake_one(PyList_GET_ITEM(all, i)) < 0;
    Py_DECREF(all);
    return bad ? -1 : 0;
}

static PyObject *
lane_data_received(Lane *self, PyObject *data)
{
    PyObject *frames = NULL, *codes = NULL, *conn = self->conn, *reader = self->reader;
    uint64_t local[64];
    SimpleParse s = {.codes = local, .local = local, .code_cap = 64, .longest = -1};
    if (!PyBytes_CheckExact(data) || PyBytes_GET_SIZE(data) < 2 || PyBytes_GET_SIZE(data) >= 128) goto slow;
    if (SLOT(self, conn, C_STATE) != self->open_state) goto slow;
    PyObject *chunks = SLOT(self, reader, R_CHUNKS);
    if (chunks == NULL || !PyList_CheckExact(chunks) || PyList_GET_SIZE(chunks) != 0 ||
        SLOT(self, reader, R_HELD) != Py_None || SLOT(self, reader, R_MSG_CLS) != Py_None ||
        SLOT(self, reader, R_FAILED) != Py_None || SLOT(self, reader, R_INTO) != Py_None) {
        goto slow;
    }
    long long max_frame = slot_limit(SLOT(self, reader, R_MAX_FRAME));
    long long max_msg = slot_limit(SLOT(self, reader, R_MAX_MESSAGE));
    if (max_frame == -2 || max_msg == -2) goto slow;
    Py_ssize_t max_queue;
    {
        PyObject *v = PyObject_GetAttr(self->session, n_max_queue);
        if (v == NULL) goto error;
        max_queue = PyLong_Check(v) ? PyLong_AsSsize_t(v) : -1;
        Py_DECREF(v);
        if (max_queue == -1 && PyErr_Occurred()) goto error;
    }
    Py_ssize_t waiting = PyObject_Size(self->queue);
    if (waiting < 0) goto error;
    if (max_queue - waiting <= 0) goto slow;
    if ((frames = PyList_New(0)) == NULL) goto error;
    s.p = (const unsigned char *)PyBytes_AS_STRING(data);
    s.pos = 0;
    s.end = PyBytes_GET_SIZE(data);
    s.masked = !self->client;
    s.max_frame = max_frame;
    s.max_msg = max_msg;
    s.count = max_queue - waiting;
    s.text_cls = (PyTypeObject *)self->text_cls;
    s.binary_cls = (PyTypeObject *)self->binary_cls;
    s.tag = self->tag;
    s.frames = frames;
    Py_ssize_t taken = parse_simple(&s);
    if (taken < 0) goto error;
    if (taken == 0 || s.pos != s.end) goto slow;
    /* Taken: what `_on_data` does with these frames. */
    {
        int pending = attr_true(self->session, n_uncork_pending);
        if (pending < 0) goto error;
        if (!pending && PyObject_SetAttr(self->session, n_corked, Py_False) < 0) goto error;
    }
    /* The reader as a feed of plain frames leaves it. */
    if (SLOT(self, reader, R_CONTROLS) != zero) slot_set(self, reader, R_CONTROLS, zero);
    if (SLOT(self, reader, R_COMPRESSED) != zero) slot_set(self, reader, R_COMPRESSED, zero);
    if (SLOT(self, reader, R_JOINED) != Py_None) slot_set(self, reader, R_JOINED, Py_None);
    if (self->stage_rx != Py_None && taken == 1) {
        /* One frame (a request's answer): stage_rx stages it as stage_tx does; so here. */
        PyObject *payload = Py_TYPE(data_descr)->tp_descr_get(data_descr, PyList_GET_ITEM(frames, 0), NULL);
        if (payload == NULL) goto error;
        int bad = lane_stage(self, 1, (long long)s.codes[0], payload);
        Py_DECREF(payload);
        if (bad < 0) goto error;
    }
    else if (self->stage_rx != Py_None) {
        if ((codes = PyTuple_New(taken)) == NULL) goto error;
        for (Py_ssize_t i = 0; i < taken; i++) {
            PyObject *code = PyLong_FromUnsignedLongLong(s.codes[i]);
            if (code == NULL) goto error;
            PyTuple_SET_ITEM(codes, i, code);
        }
        PyObject *t = lane_now(self);
        if (t == NULL) goto error;
        PyObject *args[5] = {t, codes, frames, zero, Py_None};
        PyObject *r = PyObject_Vectorcall(self->stage_rx, args, 5, NULL);
        Py_DECREF(t);
        if (lane_done(r) < 0) goto error;
    }
    if (lane_done(PyObject_CallMethodOneArg(self->queue, n_extend, frames)) < 0) goto error;
    if (PyList_GET_SIZE(self->waiters) && lane_wake(self) < 0) goto error;
    if (waiting + taken >= max_queue && SLOT(self, self->feed, F_PAUSED) != Py_True &&
        lane_done(PyObject_CallMethodNoArgs(self->session, n_pause_reading)) < 0) {
        goto error;
    }
    self->frames_in += taken;
    Py_DECREF(frames);
    Py_XDECREF(codes);
    if (s.codes != local) PyMem_Free(s.codes);
    Py_RETURN_NONE;
slow:
    Py_XDECREF(frames);
    Py_XDECREF(codes);
    if (s.codes != local) PyMem_Free(s.codes);
    return PyObject_CallOneArg(self->slow_data, data);
error:
    Py_XDECREF(frames);
    Py_XDECREF(codes);
    if (s.codes != local) PyMem_Free(s.codes);
    return NULL;
}

/* transport.is_closing(): 1, 0, or -1 with an exception. On asyncio's own plain TCP
 * transport (the lane has its socket) read where that method reads it, its `_closing`
 * (a Python call per send was a tenth of the lane's send). */
static int
lane_closing(Lane *self)
{
    if (self->tdict != NULL) {
        PyObject *v = PyDict_GetItemWithError(self->tdict, n_closing);
        if (v == Py_True) return 1;
        if (v == Py_False) return 0;
        if (v == NULL && PyErr_Occurred()) return -1;
    }
    PyObject *closing = PyObject_CallMethodNoArgs(self->transport, n_is_closing);
    if (closing == NULL) return -1;
    int c = PyObject_IsTrue(closing);
    Py_DECREF(closing);
    return c;
}

/* transport.get_write_buffer_size() == 0: 1, 0, or -1 with an exception. On asyncio's
 * plain TCP transport, its `_buffer` is empty (a bytearray, or a deque of buffers from
 * Python 3.12: the method sums it). */
static int
lane_buffer_empty(Lane *self)
{
    if (self->tdict != NULL) {
        PyObject *b = PyDict_GetItemWithError(self->tdict, n_buffer);
        if (b != NULL && Py_IS_TYPE(b, self->tbuffer_type)) {
            Py_ssize_t n = PyObject_Size(b);
            return n < 0 ? -1 : n == 0;
        }
        if (b == NULL && PyErr_Occurred()) return -1;
    }
    PyObject *size = PyObject_CallMethodNoArgs(self->transport, n_get_write_buffer_size);
    if (size == NULL) return -1;
    int empty = PyLong_CheckExact(size) && PyLong_AsLongLong(size) == 0;
    Py_DECREF(size);
    return empty;
}

/* Writes `wire` as the transport would: send(2) first when the lane has the socket and the
 * transport's buffer is empty, the rest (or all of it) through transport.write. */
static int
lane_write(Lane *self, PyObject *wire)
{
    Py_ssize_t n = PyBytes_GET_SIZE(wire), sent = 0;
#ifndef _WIN32
    if (self->fd >= 0) {
        int empty = lane_buffer_empty(self);
        if (empty < 0) return -1;
        if (empty) {
            int flags = MSG_DONTWAIT;
#ifdef MSG_NOSIGNAL
            flags |= MSG_NOSIGNAL;
#endif
            ssize_t r = send(self->fd, PyBytes_AS_STRING(wire), (size_t)n, flags);
            if (r == n) return 0;
            if (r > 0) sent = (Py_ssize_t)r; /* else EAGAIN, or an error the transport meets and reports */
        }
    }
#endif
    PyObject *rest = sent ? PyBytes_FromStringAndSize(PyBytes_AS_STRING(wire) + sent, n - sent) : Py_NewRef(wire);
    if (rest == NULL) return -1;
    int r = lane_done(PyObject_CallMethodOneArg(self->transport, n_write, rest));
    Py_DECREF(rest);
    return r;
}

static PyObject *
lane_send_nowait(Lane *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "send_nowait() takes a frame and compress");
        return NULL;
    }
    PyObject *frame = args[0], *payload = NULL, *wire = NULL, *conn = self->conn;
    int opcode;
    PyObject *data = NULL; /* a Frame's payload */
    if (PyUnicode_CheckExact(frame)) opcode = 1;
    else if (PyBytes_CheckExact(frame)) opcode = 2;
    else if (Py_IS_TYPE(frame, (PyTypeObject *)self->text_cls) || Py_IS_TYPE(frame, (PyTypeObject *)self->binary_cls)) {
        /* A whole Text or Binary frame, no rsv bit, not compressed (an echo): what
         * Connection.send does with it is what it does with its payload. */
        PyObject *fin = Py_TYPE(fin_descr)->tp_descr_get(fin_descr, frame, NULL);
        PyObject *ext = fin == NULL ? NULL : Py_TYPE(ext_descr)->tp_descr_get(ext_descr, frame, NULL);
        int plain = ext != NULL && fin == Py_True && PyLong_CheckExact(ext) && PyLong_AsLong(ext) == 0;
        Py_XDECREF(fin);
        Py_XDECREF(ext);
        if (PyErr_Occurred()) return NULL;
        if (!plain) goto slow;
        if ((data = Py_TYPE(data_descr)->tp_descr_get(data_descr, frame, NULL)) == NULL) return NULL;
        if (!PyBytes_CheckExact(data)) {
            Py_DECREF(data);
            goto slow;
        }
        opcode = Py_IS_TYPE(frame, (PyTypeObject *)self->text_cls) ? 1 : 2;
    }
    else goto slow;
    if (SLOT(self, conn, C_STATE) != self->open_state || SLOT(self, conn, C_TX_MSG_CLS) != Py_None) goto slow;
    if (SLOT(self, conn, C_DEFLATE) != Py_None) {
        int compress = nargs > 1 ? PyObject_IsTrue(args[1]) : 1;
        if (compress < 0) return NULL;
        if (compress) goto slow;
    }
    PyObject *out = SLOT(self, conn, C_OUT), *out_size = SLOT(self, conn, C_OUT_SIZE);
    if (out == NULL || !PyList_CheckExact(out) || out_size == NULL || !PyLong_CheckExact(out_size)) goto slow;
    int corked = attr_true(self->session, n_corked);
    if (corked < 0) goto error;
    if (!corked && PyList_GET_SIZE(out) != 0) goto slow;
    {
        int c = lane_closing(self);
        if (c < 0) goto error;
        if (c) goto slow;
    }
    if (data != NULL) {
        payload = data; /* its reference */
        data = NULL;
    }
    else if (opcode == 1) {
        if ((payload = PyUnicode_AsUTF8String(frame)) == NULL) goto error;
    }
    else {
        payload = Py_NewRef(frame);
    }
    Py_ssize_t n = PyBytes_GET_SIZE(payload);
    if (n > self->max_send) goto slow;
    Py_ssize_t head = n < 126 ? 2 : n < 65536 ? 4 : 10;
    Py_ssize_t key_len = self->client ? 4 : 0;
    if ((wire = PyBytes_FromStringAndSize(NULL, head + key_len + n)) == NULL) goto error;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(wire);
    unsigned char mbit = key_len ? 0x80 : 0;
    w[0] = (unsigned char)(0x80 | opcode);
    if (head == 2) {
        w[1] = (unsigned char)(mbit | n);
    }
    else if (head == 4) {
        w[1] = mbit | 126;
        w[2] = (unsigned char)(n >> 8);
        w[3] = (unsigned char)n;
    }
    else {
        w[1] = mbit | 127;
        for (int i = 0; i < 8; i++) w[2 + i] = (unsigned char)((unsigned long long)n >> (56 - 8 * i));
    }
    if (key_len) {
        if (self->pool_pos + 4 > PyBytes_GET_SIZE(self->pool)) {
            PyObject *size = PyLong_FromLong(4096);
            PyObject *fresh = size == NULL ? NULL : PyObject_CallOneArg(self->urandom, size);
            Py_XDECREF(size);
            if (fresh == NULL) goto error;
            if (!PyBytes_CheckExact(fresh) || PyBytes_GET_SIZE(fresh) < 4) {
                Py_DECREF(fresh);
                PyErr_SetString(PyExc_TypeError, "Lane: urandom() must return bytes");
                goto error;
            }
            Py_SETREF(self->pool, fresh);
            self->pool_pos = 0;
        }
        const unsigned char *key = (const unsigned char *)PyBytes_AS_STRING(self->pool) + self->pool_pos;
        self->pool_pos += 4;
        memcpy(w + head, key, 4);
        xor_mask(w + head + 4, (const unsigned char *)PyBytes_AS_STRING(payload), n, key);
    }
    else {
        memcpy(w + head, PyBytes_AS_STRING(payload), n);
    }
    int stamped = 1; /* the first write of a loop turn carries the timestamp */
    if (!corked) { /* written at once: `_written`'s first case */
        if (lane_write(self, wire) < 0) goto error;
        if (PyObject_SetAttr(self->session, n_corked, Py_True) < 0) goto error;
    }
    else { /* batched until the next loop turn, as `_written` batches */
        int pending = attr_true(self->session, n_uncork_pending);
        if (pending < 0) goto error;
        stamped = !pending;
        Py_ssize_t size = PyLong_AsSsize_t(out_size);
        if (size == -1 && PyErr_Occurred()) goto error;
        size += PyBytes_GET_SIZE(wire);
        PyObject *new_size = PyLong_FromSsize_t(size);
        if (new_size == NULL) goto error;
        if (PyList_Append(out, wire) < 0) {
            Py_DECREF(new_size);
            goto error;
        }
        PyObject **at = (PyObject **)((char *)conn + self->off[C_OUT_SIZE]);
        Py_SETREF(*at, new_size);
        int write_now;
        if (!pending) {
            if (PyObject_SetAttr(self->session, n_uncork_pending, Py_True) < 0 ||
                lane_done(PyObject_CallOneArg(self->call_soon, self->uncork)) < 0) {
                goto error;
            }
            write_now = n >= self->direct_write;
        }
        else {
            write_now = n >= self->direct_write || size >= self->cork_limit;
        }
        if (write_now && lane_done(PyObject_CallNoArgs(self->write_out)) < 0) goto error;
    }
    if (self->stage_tx != Py_None && lane_stage(self, stamped, ((long long)n << 16) | 0x80 | opcode, payload) < 0) goto error;
    self->frames_out++;
    Py_DECREF(wire);
    Py_DECREF(payload);
    Py_RETURN_NONE;
slow:
    Py_XDECREF(data);
    Py_XDECREF(payload);
    return PyObject_Vectorcall(self->slow_send, args, nargs, NULL);
error:
    Py_XDECREF(data);
    Py_XDECREF(wire);
    Py_XDECREF(payload);
    return NULL;
}

static PyObject *
lane_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"session", "conn", "reader", "feed", "queue", "waiters", "stage_tx", "stage_rx",
                             "text", "binary", "open_state", "transport", "fd", "client", "tag", "max_send",
                             "slow_data", "slow_send", "urandom", "time_ns", "call_soon", "uncork", "write_out",
                             "direct_write", "cork_limit", NULL};
    PyObject *o[12], *slow_data, *slow_send, *urandom, *time_ns, *call_soon, *uncork, *write_out;
    int fd, client;
    unsigned long long tag;
    Py_ssize_t max_send, direct_write, cork_limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OOOOOOOOOOOOipKnOOOOOOOnn:Lane", kwlist, &o[0], &o[1], &o[2],
                                     &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &fd,
                                     &client, &tag, &max_send, &slow_data, &slow_send, &urandom, &time_ns,
                                     &call_soon, &uncork, &write_out, &direct_write, &cork_limit)) {
        return NULL;
    }
    if (data_descr == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Lane() before configure()");
        return NULL;
    }
    if (!PyList_CheckExact(o[5]) || !PyType_Check(o[8]) || !PyType_Check(o[9])) {
        PyErr_SetString(PyExc_TypeError, "Lane(): waiters must be a list, text and binary frame classes");
        return NULL;
    }
    if (lane_names() < 0) return NULL;
    Lane *self = (Lane *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    PyObject **fields[] = {&self->session,  &self->conn,       &self->reader,     &self->feed,
                           &self->queue,    &self->waiters,    &self->stage_tx,   &self->stage_rx,
                           &self->text_cls, &self->binary_cls, &self->open_state, &self->transport};
    for (int i = 0; i < 12; i++) *fields[i] = Py_NewRef(o[i]);
    self->slow_data = Py_NewRef(slow_data);
    self->slow_send = Py_NewRef(slow_send);
    self->urandom = Py_NewRef(urandom);
    self->time_ns = Py_NewRef(time_ns);
    self->call_soon = Py_NewRef(call_soon);
    self->uncork = Py_NewRef(uncork);
    self->write_out = Py_NewRef(write_out);
    self->direct_write = direct_write;
    self->cork_limit = cork_limit;
    self->pool_pos = 0;
    self->fd = fd;
    self->tdict = NULL;
    self->tbuffer_type = NULL;
    if (fd >= 0) {
        /* asyncio's own plain TCP transport (the session checks its class): its state as
         * its is_closing() and get_write_buffer_size() read it, when it has the shape
         * they read (else the lane calls them). */
        PyObject *d = PyObject_GenericGetDict(self->transport, NULL);
        if (d == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        PyObject *closing = PyDict_GetItemWithError(d, n_closing);
        PyObject *buffer = closing == NULL ? NULL : PyDict_GetItemWithError(d, n_buffer);
        if (PyErr_Occurred()) {
            Py_DECREF(d);
            Py_DECREF(self);
            return NULL;
        }
        if (PyBool_Check(closing) && buffer != NULL && PySequence_Check(buffer)) {
            self->tdict = d;
            self->tbuffer_type = (PyTypeObject *)Py_NewRef((PyObject *)Py_TYPE(buffer));
        }
        else {
            Py_DECREF(d);
        }
    }
    self->client = client;
    self->tag = (uint64_t)tag;
    self->max_send = max_send;
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *owner = i <= C_OUT_SIZE ? self->conn : i <= R_JOINED ? self->reader : self->feed;
        if ((self->off[i] = slot_offset(owner, slot_names[i])) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    }
    if (PyCFunction_Check(self->stage_tx) && PyCFunction_GET_SELF(self->stage_tx) != NULL &&
        Py_IS_TYPE(PyCFunction_GET_SELF(self->stage_tx), &StagerType)) {
        self->rec_state = Py_NewRef(PyCFunction_GET_SELF(self->stage_tx)); /* the compiled stagers' Stager */
    }
    if ((self->pool = PyBytes_FromStringAndSize(NULL, 0)) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
lane_traverse(Lane *self, visitproc visit, void *arg)
{
    Py_VISIT(self->session);
    Py_VISIT(self->conn);
    Py_VISIT(self->reader);
    Py_VISIT(self->feed);
    Py_VISIT(self->queue);
    Py_VISIT(self->waiters);
    Py_VISIT(self->stage_tx);
    Py_VISIT(self->stage_rx);
    Py_VISIT(self->text_cls);
    Py_VISIT(self->binary_cls);
    Py_VISIT(self->open_state);
    Py_VISIT(self->transport);
    Py_VISIT(self->tdict);
    Py_VISIT(self->tbuffer_type);
    Py_VISIT(self->slow_data);
    Py_VISIT(self->slow_send);
    Py_VISIT(self->urandom);
    Py_VISIT(self->time_ns);
    Py_VISIT(self->rec_state);
    Py_VISIT(self->call_soon);
    Py_VISIT(self->uncork);
    Py_VISIT(self->write_out);
    return 0;
}

static int
lane_clear(Lane *self)
{
    Py_CLEAR(self->session);
    Py_CLEAR(self->conn);
    Py_CLEAR(self->reader);
    Py_CLEAR(self->feed);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->waiters);
    Py_CLEAR(self->stage_tx);
    Py_CLEAR(self->stage_rx);
    Py_CLEAR(self->text_cls);
    Py_CLEAR(self->binary_cls);
    Py_CLEAR(self->open_state);
    Py_CLEAR(self->transport);
    Py_CLEAR(self->tdict);
    Py_CLEAR(self->tbuffer_type);
    Py_CLEAR(self->slow_data);
    Py_CLEAR(self->slow_send);
    Py_CLEAR(self->urandom);
    Py_CLEAR(self->time_ns);
    Py_CLEAR(self->rec_state);
    Py_CLEAR(self->call_soon);
    Py_CLEAR(self->uncork);
    Py_CLEAR(self->write_out);
    return 0;
}

static void
lane_dealloc(Lane *self)
{
    PyObject_GC_UnTrack(self);
    lane_clear(self);
    Py_CLEAR(self->pool);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef lane_methods[] = {
    {"data_received", (PyCFunction)lane_data_received, METH_O,
     "data_received(data): the session's _on_data, in C for plain frames (see the module)."},
    {"send_nowait", (PyCFunction)(void (*)(void))lane_send_nowait, METH_FASTCALL,
     "send_nowait(frame, compress=True): the session's _send_nowait, in C for a whole str or bytes message."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef lane_members[] = {
    {"frames_in", T_PYSSIZET, offsetof(Lane, frames_in), READONLY, "Frames received through this path (not handed on)."},
    {"frames_out", T_PYSSIZET, offsetof(Lane, frames_out), READONLY, "Frames sent through this path."},
    {"fd", T_INT, offsetof(Lane, fd), READONLY, "The socket written to directly, or -1 (through the transport)."},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *
lane_get_native_staging(Lane *self, void *closure)
{
    return PyBool_FromLong(self->rec_state != NULL);
}

static PyObject *
lane_get_reads_transport(Lane *self, void *closure)
{
    return PyBool_FromLong(self->tdict != NULL);
}

static PyGetSetDef lane_getset[] = {
    {"reads_transport", (getter)lane_get_reads_transport, NULL,
     "True when the lane reads asyncio's plain TCP transport's state itself (no is_closing() call per send).", NULL},
    {"native_staging", (getter)lane_get_native_staging, NULL,
     "True when the lane stages recorded frames through the recorder's compiled Stager itself.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rawws_nb._speedups.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The session's per-frame path in C (see rawws_nb._speedups).",
    .tp_new = lane_new,
    .tp_dealloc = (destructor)lane_dealloc,
    .tp_traverse = (traverseproc)lane_traverse,
    .tp_clear = (inquiry)lane_clear,
    .tp_methods = lane_methods,
    .tp_members = lane_members,
    .tp_getset = lane_getset,
};

/* split_payloads(buffer, lengths, pos) -> list[bytes]: the payloads packed one after
 * the other in `buffer` from byte `pos`, one per entry of `lengths` (int64s: the rows'
 * recorded lengths), as bytes (`_PackedRun.payloads`: a DataFrame of a recorded session
 * builds its payload column from these). */
static PyObject *
speedups_split_payloads(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "split_payloads() takes 3 arguments");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[2]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    Py_buffer buf, len;
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &len, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *out = NULL;
    if (len.itemsize != 8 || len.format == NULL || (strcmp(len.format, "l") != 0 && strcmp(len.format, "q") != 0 &&
                                                    strcmp(len.format, "<q") != 0 && strcmp(len.format, "<l") != 0)) {
        PyErr_SetString(PyExc_TypeError, "split_payloads(): lengths must be int64s");
        goto done;
    }
    Py_ssize_t n = len.len / 8;
    const int64_t *sizes = (const int64_t *)len.buf;
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (sizes[i] < 0 || sizes[i] > (int64_t)buf.len) {
            total = -1;
            break;
        }
        total += sizes[i];
    }
    if (pos < 0 || total < 0 || pos + total > (int64_t)buf.len) {
        PyErr_SetString(PyExc_ValueError, "split_payloads(): the lengths run past the buffer");
        goto done;
    }
    if ((out = PyList_New(n)) == NULL) goto done;
    const char *p = (const char *)buf.buf + pos;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyBytes_FromStringAndSize(p, (Py_ssize_t)sizes[i]);
        if (b == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, b);
        p += sizes[i];
    }
done:
    PyBuffer_Release(&len);
    PyBuffer_Release(&buf);
    return out;
}

/* untracked_list() -> a new empty list the garbage collector does not track: for lists
 * that only ever hold objects that cannot be in a reference cycle with them (the
 * recorder's payload store: bytes, views of bytes, ints). */
static PyObject *
speedups_untracked_list(PyObject *module, PyObject *unused)
{
    PyObject *list = PyList_New(0);
    if (list != NULL) PyObject_GC_UnTrack(list);
    return list;
}

static PyMethodDef methods[] = {
    {"mask", (PyCFunction)(void (*)(void))speedups_mask, METH_VARARGS | METH_KEYWORDS,
     "mask(data, key, prefix=b'') -> bytes: prefix + data XOR the 4-byte key."},
    {"mask_in_place", speedups_mask_in_place, METH_VARARGS,
     "mask_in_place(buffer, key): buffer XOR the 4-byte key repeated, in place."},
    {"masked_frame", (PyCFunction)(void (*)(void))speedups_masked_frame, METH_FASTCALL,
     "masked_frame(b0, payload, keys, pos) -> bytes: a whole masked frame, the key keys[pos:pos+4]."},
    {"stage", (PyCFunction)(void (*)(void))speedups_stage, METH_FASTCALL,
     "stage(state, t_ns, code, payload): the recorder's stage_tx in one call."},
    {"stagers", speedups_stagers, METH_O, "stagers(state) -> (stage_tx, stage_rx), bound to the recorder's state."},
    {"stage_rx", (PyCFunction)(void (*)(void))speedups_stage_rx, METH_FASTCALL,
     "stage_rx(state, t_ns, codes, frames, compressed=0, joined=None): the recorder's stage_rx."},
    {"split_payloads", (PyCFunction)(void (*)(void))speedups_split_payloads, METH_FASTCALL,
     "split_payloads(buffer, lengths, pos) -> list[bytes]: consecutive payloads from byte pos, one per length."},
    {"untracked_list", speedups_untracked_list, METH_NOARGS,
     "untracked_list() -> a new empty list the garbage collector does not track."},
    {"utf8_valid", speedups_utf8_valid, METH_O, "utf8_valid(data) -> bool: strict UTF-8, as bytes.decode."},
    {"flush_rows", speedups_flush_rows, METH_VARARGS,
     "flush_rows(stage, next_msg, open0, open1): the recorder's flush, as compact columns."},
    {"configure", speedups_configure, METH_VARARGS,
     "configure(data_descriptor, fin_descriptor, ext_descriptor): the Frame slots read_simple() sets."},
    {"read_simple", (PyCFunction)(void (*)(void))speedups_read_simple, METH_FASTCALL,
     "read_simple(data, pos, masked, max_frame, max_message, count, text, binary, tag, frames, codes, joined, "
     "join_max) -> (pos, longest)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "rawws_nb._speedups", "The compiled fast path of rawws_nb.wire, the recorder and the session.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&PayloadBufferType) < 0 || PyType_Ready(&LaneType) < 0 || PyType_Ready(&StagerType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&PayloadBufferType);
    if (PyModule_AddObject(module, "PayloadBuffer", (PyObject *)&PayloadBufferType) < 0) {
        Py_DECREF(&PayloadBufferType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&StagerType);
    if (PyModule_AddObject(module, "Stager", (PyObject *)&StagerType) < 0) {
        Py_DECREF(&StagerType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&LaneType);
    if (PyModule_AddObject(module, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(&LaneType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
