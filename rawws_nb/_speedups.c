/* rawws_nb._speedups: the compiled fast path of rawws_nb.wire (optional).
 *
 * Functions, each with a pure-Python equivalent in wire.py that stays the reference
 * and the fallback (the module is built when a C compiler is there; RAWWS_NB_PURE=1
 * turns it off):
 *
 *   flush_rows(...): the recorder's flush (rawws_nb/timeline/recorder.py), see below.
 *
 *   stage(state, t_ns, code, payload): the recorder's stage_tx, see below; stagers(state)
 *   gives it and stage_rx bound to the state (what the recorder calls).
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
 * one frame is staged as stage_tx stages it; anything else goes to the reference. */
static PyObject *stage_tx_name = NULL, *flush_name = NULL, *trim_name = NULL;
static PyObject *stage_rx_name = NULL, *blobs_name = NULL, *ends_name = NULL, *add_packed_name = NULL;
static PyObject *store_name = NULL, *data_name = NULL;

/* The recorder's staging buffers are bytearrays of native int64s (`Recorder._stage`,
 * `_tpos`, `_tval`): appending is a resize and a copy. */
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

static int
append_obj(PyObject *arr, PyObject *v)
{
    long long value = PyLong_AsLongLong(v);
    if (value == -1 && PyErr_Occurred()) return -1;
    return append_long(arr, value);
}

/* Frames staged: the length of a staging buffer in int64s. */
static Py_ssize_t
staged_count(PyObject *arr)
{
    if (!PyByteArray_CheckExact(arr)) {
        PyErr_SetString(PyExc_TypeError, "stage(): the staging buffers are bytearrays");
        return -1;
    }
    return PyByteArray_GET_SIZE(arr) / 8;
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
        (data_name = PyUnicode_InternFromString("data")) == NULL) {
        return -1;
    }
    return 0;
}

static PyObject *speedups_stage(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

static PyObject *
speedups_stage_rx(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4 || nargs > 6) {
        PyErr_SetString(PyExc_TypeError, "stage_rx() takes 4 to 6 arguments");
        return NULL;
    }
    PyObject *state = args[0], *t_ns = args[1], *codes = args[2], *frames = args[3];
    PyObject *compressed = nargs > 4 ? args[4] : NULL, *joined = nargs > 5 ? args[5] : Py_None;
    if (stage_init(state) < 0) return NULL;
    PyObject *recorder = PyTuple_GET_ITEM(state, 6);
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
            PyObject *call[4] = {state, t_ns, code, data};
            r = speedups_stage(module, call, 4);
        }
        Py_XDECREF(code);
        Py_XDECREF(frame);
        Py_XDECREF(data);
        return r;
    }
    Py_ssize_t pack_min = PyLong_AsSsize_t(PyTuple_GET_ITEM(state, 7));
    if (pack_min == -1 && PyErr_Occurred()) return NULL;
    if (n == 0) Py_RETURN_NONE;
    PyObject *holder = PyTuple_GET_ITEM(state, 3);
    if (squeezed || joined == Py_None || n < pack_min || !PyList_CheckExact(holder) || PyList_GET_SIZE(holder) != 3 ||
        !PyObject_CheckBuffer(codes)) {
        PyObject *call[6] = {recorder, t_ns, codes, frames, compressed == NULL ? Py_False : compressed, joined};
        return PyObject_VectorcallMethod(stage_rx_name, call, 6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    PyObject *stage = PyTuple_GET_ITEM(state, 0), *tpos = PyTuple_GET_ITEM(state, 1);
    PyObject *tval = PyTuple_GET_ITEM(state, 2);
    Py_ssize_t flush_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(state, 5));
    Py_ssize_t staged = staged_count(stage);
    if (staged < 0 || (flush_at == -1 && PyErr_Occurred())) return NULL;
    if (append_long(tpos, staged) < 0 || append_obj(tval, t_ns) < 0) return NULL;
    {
        /* The reader's codes, an array('q'): their int64s appended as they are. */
        Py_buffer view;
        if (PyObject_GetBuffer(codes, &view, PyBUF_FORMAT) < 0) return NULL;
        int bad = view.itemsize != 8 || view.format == NULL || strcmp(view.format, "q") != 0;
        Py_ssize_t at = PyByteArray_GET_SIZE(stage);
        if (bad) {
            PyErr_SetString(PyExc_TypeError, "stage_rx(): codes must be an array('q')");
        }
        else if (PyByteArray_Resize(stage, at + view.len) < 0) {
            bad = 1;
        }
        else {
            memcpy(PyByteArray_AS_STRING(stage) + at, view.buf, (size_t)view.len);
        }
        PyBuffer_Release(&view);
        if (bad) return NULL;
    }
    /* The payloads: the batch joins the open run (the tail is empty), or the store
     * starts a new run. */
    PyObject *tail = PyList_GET_ITEM(holder, 0), *run = PyList_GET_ITEM(holder, 2);
    if (!PyList_CheckExact(tail)) {
        PyErr_SetString(PyExc_TypeError, "stage_rx(): holder must be [list, int, run]");
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
    /* As the reference ends: trim when the store is over capacity, else flush when the
     * stage is full. (Read after add_packed, which may have replaced the tail.) */
    tail = PyList_GET_ITEM(holder, 0);
    Py_ssize_t room = PyLong_AsSsize_t(PyList_GET_ITEM(holder, 1));
    if (room == -1 && PyErr_Occurred()) return NULL;
    if (PyList_GET_SIZE(tail) > room) {
        if (call_back(recorder, trim_name) < 0) return NULL;
    }
    else {
        staged = staged_count(stage);
        if (staged < 0) return NULL;
        if (staged >= flush_at && call_back(recorder, flush_name) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stage_tx_bound(PyObject *state, PyObject *const *args, Py_ssize_t nargs);
static PyObject *stage_rx_bound(PyObject *state, PyObject *const *args, Py_ssize_t nargs);

static PyMethodDef stage_tx_def = {"stage_tx", (PyCFunction)(void (*)(void))stage_tx_bound, METH_FASTCALL,
                                   "stage_tx(t_ns, code, payload): the recorder's stage_tx, bound to its state."};
static PyMethodDef stage_rx_def = {"stage_rx", (PyCFunction)(void (*)(void))stage_rx_bound, METH_FASTCALL,
                                   "stage_rx(t_ns, codes, frames, compressed=0, joined=None), bound to its state."};

/* stagers(state) -> (stage_tx, stage_rx): the two, bound to `state` (built-in functions
 * whose self is the state: one call, nothing repacked per frame). */
static PyObject *
speedups_stagers(PyObject *module, PyObject *state)
{
    if (stage_init(state) < 0) return NULL;
    PyObject *tx = PyCFunction_NewEx(&stage_tx_def, state, NULL);
    PyObject *rx = tx == NULL ? NULL : PyCFunction_NewEx(&stage_rx_def, state, NULL);
    PyObject *pair = rx == NULL ? NULL : PyTuple_Pack(2, tx, rx);
    Py_XDECREF(tx);
    Py_XDECREF(rx);
    return pair;
}

static PyObject *
stage_rx_bound(PyObject *state, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *full[7];
    if (nargs < 3 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "stage_rx() takes 3 to 5 arguments");
        return NULL;
    }
    full[0] = state;
    for (Py_ssize_t i = 0; i < nargs; i++) full[i + 1] = args[i];
    return speedups_stage_rx(NULL, full, nargs + 1);
}

static PyObject *
stage_tx_bound(PyObject *state, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "stage_tx() takes 3 arguments");
        return NULL;
    }
    PyObject *full[4] = {state, args[0], args[1], args[2]};
    return speedups_stage(NULL, full, 4);
}

static PyObject *
speedups_stage(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "stage() takes 4 arguments");
        return NULL;
    }
    PyObject *state = args[0], *t_ns = args[1], *code_obj = args[2], *payload = args[3];
    if (stage_init(state) < 0) return NULL;
    PyObject *stage = PyTuple_GET_ITEM(state, 0), *tpos = PyTuple_GET_ITEM(state, 1);
    PyObject *tval = PyTuple_GET_ITEM(state, 2), *holder = PyTuple_GET_ITEM(state, 3);
    PyObject *recorder = PyTuple_GET_ITEM(state, 6);
    long long cap = PyLong_AsLongLong(PyTuple_GET_ITEM(state, 4));
    Py_ssize_t flush_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(state, 5));
    long long code = PyLong_AsLongLong(code_obj);
    if (PyErr_Occurred()) return NULL;
    if (!PyList_CheckExact(holder) || PyList_GET_SIZE(holder) != 3 || !PyList_CheckExact(PyList_GET_ITEM(holder, 0))) {
        PyErr_SetString(PyExc_TypeError, "stage(): holder must be [list, int, run]");
        return NULL;
    }
    if (code & (1 << 9)) { /* COMPRESSED: the Python reference does it */
        return PyObject_CallMethodObjArgs(recorder, stage_tx_name, t_ns, code_obj, payload, NULL);
    }
    if (t_ns != Py_None) {
        Py_ssize_t n = staged_count(stage);
        if (n < 0) return NULL;
        if (n >= flush_at) {
            if (call_back(recorder, flush_name) < 0) return NULL;
            if ((n = staged_count(stage)) < 0) return NULL;
        }
        if (append_long(tpos, n) < 0 || append_obj(tval, t_ns) < 0) return NULL;
    }
    if (append_obj(stage, code_obj) < 0) return NULL;
    /* Read after a flush (which may run Python): the store's current tail and its room. */
    PyObject *payloads = PyList_GET_ITEM(holder, 0);
    Py_ssize_t room = PyLong_AsSsize_t(PyList_GET_ITEM(holder, 1));
    if (room == -1 && PyErr_Occurred()) return NULL;
    long long length = code >> 16;
    int keep_whole = length <= cap || (code & 8);
    if (keep_whole) {
        if (PyList_Append(payloads, payload) < 0) return NULL;
    }
    else {
        PyObject *head = PySequence_GetSlice(payload, 0, (Py_ssize_t)cap);
        if (head == NULL) return NULL;
        int bad = PyList_Append(payloads, head);
        Py_DECREF(head);
        if (bad < 0) return NULL;
    }
    if (PyList_GET_SIZE(payloads) > room && call_back(recorder, trim_name) < 0) return NULL;
    Py_RETURN_NONE;
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
    long long longest = -1;
    /* `joined` grows once to what the rest of `data` could hold, and is cut back at the end. */
    Py_ssize_t join_at = 0, join_room = 0;
    if (joined != NULL) {
        /* Room for a few KiB first (a large buffer would be mapped and unmapped each
           time), doubled as needed; cut back to what was used at the end. */
        Py_ssize_t rest = PyBytes_GET_SIZE(data) - (pos < 0 ? 0 : pos);
        join_at = PyByteArray_GET_SIZE(joined);
        join_room = rest < 8192 ? rest : 8192;
        if (PyByteArray_Resize(joined, join_at + join_room) < 0) {
            return NULL;
        }
        join_room += join_at;
    }
    /* The codes, gathered here and added to the array at the end (one call). */
    uint64_t local[512];
    uint64_t *code_buf = local;
    Py_ssize_t code_cap = 512;
    PyObject *result = NULL;
    descrsetfunc set_data = Py_TYPE(data_descr)->tp_descr_set;
    descrsetfunc set_fin = Py_TYPE(fin_descr)->tp_descr_set;
    descrsetfunc set_ext = Py_TYPE(ext_descr)->tp_descr_set;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t end = PyBytes_GET_SIZE(data);
    Py_ssize_t taken = 0;
    if (pos < 0) {
        pos = 0;
    }
    while (taken < count && end - pos >= 2) {
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
        if (max_frame >= 0 && length > (unsigned long long)max_frame) break;
        if (max_msg >= 0 && length > (unsigned long long)max_msg) break;
        if (end - pos < head || (unsigned long long)(end - pos - head) < length) break; /* incomplete */
        const unsigned char *src = p + pos + head;
        Py_ssize_t n = (Py_ssize_t)length;
        PyObject *payload;
        if (masked) {
            payload = PyBytes_FromStringAndSize(NULL, n);
            if (payload == NULL) goto error;
            xor_mask((unsigned char *)PyBytes_AS_STRING(payload), src, n, src - 4);
            src = (const unsigned char *)PyBytes_AS_STRING(payload);
        }
        else {
            payload = PyBytes_FromStringAndSize((const char *)src, n);
            if (payload == NULL) goto error;
        }
        if (opcode == 1 && !utf8_valid(src, n)) {
            Py_DECREF(payload);
            break; /* the Python reader reports it */
        }
        PyTypeObject *cls = (PyTypeObject *)(opcode == 1 ? text_cls : binary_cls);
        PyObject *frame = cls->tp_alloc(cls, 0);
        if (frame == NULL) {
            Py_DECREF(payload);
            goto error;
        }
        int bad = set_data(data_descr, frame, payload) < 0 || set_fin(fin_descr, frame, Py_True) < 0 ||
                  set_ext(ext_descr, frame, zero) < 0;
        if (!bad && joined != NULL && longest <= join_max && (long long)n <= join_max) {
            if (join_at + n > join_room) {
                join_room = 2 * (join_at + n);
                bad = PyByteArray_Resize(joined, join_room) < 0;
            }
            if (!bad) {
                memcpy(PyByteArray_AS_STRING(joined) + join_at, src, n);
                join_at += n;
            }
        }
        Py_DECREF(payload);
        if (bad) {
            Py_DECREF(frame);
            goto error;
        }
        /* A frame holds only bytes and bools: it can be in no reference cycle. */
        if (PyObject_IS_GC(frame)) {
            PyObject_GC_UnTrack(frame);
        }
        if (PyList_Append(frames, frame) < 0) {
            Py_DECREF(frame);
            goto error;
        }
        Py_DECREF(frame);
        if (taken == code_cap) {
            Py_ssize_t bigger = code_cap * 4;
            uint64_t *grown = PyMem_Malloc(bigger * sizeof(uint64_t));
            if (grown == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            memcpy(grown, code_buf, taken * sizeof(uint64_t));
            if (code_buf != local) PyMem_Free(code_buf);
            code_buf = grown;
            code_cap = bigger;
        }
        code_buf[taken] = (length << 16) | tag | b0;
        if ((long long)n > longest) longest = (long long)n;
        pos += head + n;
        taken++;
    }
    if (taken) {
        /* codes.frombytes(...), by an interned name: no format string, no name lookup per call. */
        PyObject *raw = PyBytes_FromStringAndSize((const char *)code_buf, (Py_ssize_t)(taken * sizeof(uint64_t)));
        if (raw == NULL) goto error;
        PyObject *r = PyObject_CallMethodOneArg(codes, frombytes_name, raw);
        Py_DECREF(raw);
        if (r == NULL) goto error;
        Py_DECREF(r);
    }
    if (joined != NULL && PyByteArray_Resize(joined, join_at) < 0) {
        goto error;
    }
    {
        PyObject *at = PyLong_FromSsize_t(pos);
        PyObject *most = at == NULL ? NULL : PyLong_FromLongLong(longest);
        if (most != NULL) {
            result = PyTuple_Pack(2, at, most);
        }
        Py_XDECREF(at);
        Py_XDECREF(most);
    }
error:
    if (code_buf != local) PyMem_Free(code_buf);
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
    PyModuleDef_HEAD_INIT, "rawws_nb._speedups", "The compiled fast path of rawws_nb.wire.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&PayloadBufferType) < 0) {
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
    return module;
}
