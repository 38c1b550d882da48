# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=True
"""
The compiled NCP packet codec.

It encodes to the same bytes and decodes to the same values, warnings and errors as the
pure-Python :mod:`ncplib._pycodec`, which is its specification. See :mod:`ncplib.packets` for
the public interface.

Memory safety: indexing is unchecked here (``boundscheck=False``), so every read of the input is
preceded by an explicit comparison with the end of the region that contains it (packet, field or
param), and every write into the scratch buffer by a ``_reserve`` call for at least its size.
Multi-byte integers are assembled from single bytes, so the byte order of the host never
matters; arrays are byte-swapped on big-endian hosts.
"""

import array
import sys
from datetime import datetime as _py_datetime
from datetime import timezone as _py_timezone

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.datetime cimport (
    PyDateTime_Check,
    datetime_day,
    datetime_hour,
    datetime_microsecond,
    datetime_minute,
    datetime_month,
    datetime_new,
    datetime_second,
    datetime_tzinfo,
    datetime_year,
    import_datetime,
)
from cpython.long cimport PyLong_AsLongLong, PyLong_AsUnsignedLongLong
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeUTF8
from cpython cimport array as carray
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcpy, memmove, memset

from ncplib import _wire as w
from ncplib._peer_warnings import warn_from_peer
from ncplib.errors import DecodeError, DecodeWarning
from ncplib.values import f64, i64, u32, u64

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL
    bint PyLong_CheckExact(object o)
    bint PyBool_Check(object o)
    bint PyFloat_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyBytes_CheckExact(object o)
    double PyFloat_AsDouble(object o) except? -1.0
    object PyLong_FromUnsignedLong(unsigned long v)
    object PyLong_FromLongLong(long long v)
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    object PyFloat_FromDouble(double v)
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) noexcept

cdef extern from *:
    """
    #include <math.h>
    static int ncp_isinf(double x) { return isinf(x); }
    """
    int ncp_isinf(double x) noexcept

import_datetime()

__all__ = ["encode_packet", "encode_packet_buffers", "decode_packet"]

# Wire constants, as C values, from their one definition in _wire.py.
include "_wire.pxi"

cdef enum:
    # Values at least this large are not copied into the scratch buffer: encode_packet copies
    # them once into the result, encode_packet_buffers returns views of them.
    BULK_MIN = 512
    STACK_SIZE = 1024
    ID_CACHE_SLOTS = 1024

cdef bint _BIG_ENDIAN_HOST = sys.byteorder == "big"
cdef object _UTC = _py_timezone.utc
cdef object _EPOCH = _py_datetime(1970, 1, 1, tzinfo=_UTC)
cdef object _py_datetime_type = _py_datetime
cdef object _array_type = array.array
cdef object _DecodeError = DecodeError
cdef object _DecodeWarning = DecodeWarning
cdef object _u32 = u32
cdef object _i64 = i64
cdef object _u64 = u64
cdef object _f64 = f64
cdef object _warn = warn_from_peer
cdef dict _TYPECODE_TO_TYPE = dict(w.TYPECODE_TO_TYPE)
cdef dict _DTYPE_TO_TYPE = dict(w.DTYPE_TO_TYPE)

# Per data type id: item size (0 for a type id that is not a data type), an empty array of its
# typecode to clone, its numpy dtype string, and its numpy dtype once numpy is imported.
cdef int _data_itemsize[256]
cdef list _data_templates = [None] * 256
cdef list _data_dtype_names = [None] * 256
cdef list _data_dtypes = [None] * 256
memset(_data_itemsize, 0, sizeof(_data_itemsize))
for _type_id, (_typecode, _dtype_name, _itemsize) in w.DATA_TYPES.items():
    _data_itemsize[_type_id] = _itemsize
    _data_templates[_type_id] = array.array(_typecode)
    _data_dtype_names[_type_id] = _dtype_name
cdef object _numpy = None


# Little-endian access, byte by byte: correct on any host.

cdef inline uint32_t _le32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _le64(const unsigned char* p) noexcept nogil:
    return (<uint64_t>_le32(p)) | ((<uint64_t>_le32(p + 4)) << 32)


cdef inline void _put32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>(v & 0xFF)
    p[1] = <unsigned char>((v >> 8) & 0xFF)
    p[2] = <unsigned char>((v >> 16) & 0xFF)
    p[3] = <unsigned char>(v >> 24)


cdef inline void _put64(unsigned char* p, uint64_t v) noexcept nogil:
    _put32(p, <uint32_t>(v & 0xFFFFFFFFu))
    _put32(p + 4, <uint32_t>(v >> 32))


# Calendar arithmetic on proleptic Gregorian days since 1970-01-01.

cdef inline int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    if m <= 2:
        y -= 1
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline void _civil_from_days(int64_t z, int* year, int* month, int* day) noexcept nogil:
    # z >= 0 here: the wire's seconds are unsigned.
    z += 719468
    cdef int64_t era = z // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    day[0] = <int>(doy - (153 * mp + 2) // 5 + 1)
    month[0] = <int>m
    year[0] = <int>(yoe + era * 400 + (1 if m <= 2 else 0))


# Encoding.

cdef struct Scratch:
    unsigned char* p
    Py_ssize_t n
    Py_ssize_t cap
    unsigned char* heap


cdef int _grow(Scratch* s, Py_ssize_t extra) except -1:
    cdef Py_ssize_t want = s.n + extra
    cdef Py_ssize_t cap = s.cap * 2
    cdef unsigned char* mem
    if extra < 0 or want < s.n:
        raise MemoryError()
    if cap < want:
        cap = want
    if s.heap == NULL:
        mem = <unsigned char*>malloc(cap)
        if mem == NULL:
            raise MemoryError()
        memcpy(mem, s.p, s.n)
    else:
        mem = <unsigned char*>realloc(s.heap, cap)
        if mem == NULL:
            raise MemoryError()
    s.heap = mem
    s.p = mem
    s.cap = cap
    return 0


cdef inline int _reserve(Scratch* s, Py_ssize_t extra) except -1:
    if extra > s.cap - s.n:
        _grow(s, extra)
    return 0


cdef dict _ENCODED_IDS = {}
# The last identifier objects encoded, by address: a hit costs no hashing at all. Each slot owns
# a reference to its string, so the address cannot be reused by another object while cached.
cdef PyObject* _id_objects[256]
cdef uint32_t _id_object_words[256]
memset(_id_objects, 0, sizeof(_id_objects))


cdef inline uint32_t _encode_identifier(object value, str what) except? 0xFFFFFFFF:
    """The wire word of an identifier (its 4 NUL-padded bytes, read little-endian)."""
    cdef size_t slot = (<size_t><PyObject*>value >> 4) & 255
    cdef PyObject* old = _id_objects[slot]
    cdef uint32_t word
    if old == <PyObject*>value:
        return _id_object_words[slot]
    word = _encode_identifier_word(value, what)
    if PyUnicode_CheckExact(value):
        Py_INCREF(value)
        _id_objects[slot] = <PyObject*>value
        _id_object_words[slot] = word
        Py_XDECREF(old)
    return word


cdef uint32_t _encode_identifier_word(object value, str what) except? 0xFFFFFFFF:
    cdef object cached
    cdef Py_ssize_t n, i
    cdef const char* utf8
    cdef unsigned char c
    cdef unsigned char raw[4]
    if PyUnicode_CheckExact(value):
        cached = _ENCODED_IDS.get(value)
        if cached is not None:
            return <uint32_t>PyLong_AsUnsignedLongLong(cached)
    if isinstance(value, str):
        utf8 = PyUnicode_AsUTF8AndSize(value, &n) if (<str>value).isascii() else NULL
        if utf8 != NULL and 1 <= n <= 4:
            memset(raw, 0, 4)
            for i in range(n):
                c = <unsigned char>utf8[i]
                if not (65 <= c <= 90 or 48 <= c <= 57 or c == 32):
                    break
                raw[i] = c
            else:
                if PyUnicode_CheckExact(value) and len(_ENCODED_IDS) < 4096:
                    _ENCODED_IDS[value] = _le32(raw)
                return _le32(raw)
    raise ValueError(w.MSG_BAD_IDENTIFIER.format(what=what, value=value))


cdef object _array_data(object value, object name):
    cdef object type_id = _TYPECODE_TO_TYPE.get(value.typecode)
    if type_id is None:
        raise TypeError(w.MSG_BAD_TYPECODE.format(name=name, typecode=value.typecode))
    if _BIG_ENDIAN_HOST and value.itemsize > 1:
        value = array.array(value.typecode, value)
        value.byteswap()
    return type_id, memoryview(value).cast("B")


cdef object _numpy_data(object value, object name):
    dtype = value.dtype
    type_id = _DTYPE_TO_TYPE.get((dtype.kind, dtype.itemsize))
    if type_id is None:
        raise TypeError(w.MSG_BAD_DTYPE.format(name=name, dtype=dtype))
    if dtype.byteorder not in "<|" and not (dtype.byteorder == "=" and not _BIG_ENDIAN_HOST):
        value = value.astype(dtype.newbyteorder("<"))
    if not value.flags.c_contiguous:
        value = value.copy(order="C")
    return type_id, memoryview(value).cast("B")


cdef object _buffer_data(object name, object value):
    """``(type id, bytes-like)`` for a value sent as raw or data bytes, else raise TypeError."""
    if isinstance(value, (bytes, bytearray)):
        return T_RAW, value
    if isinstance(value, memoryview):
        return T_RAW, (value.cast("B") if value.c_contiguous else value.tobytes())
    if isinstance(value, _array_type):
        return _array_data(value, name)
    if w.is_numpy_array(value):
        return _numpy_data(value, name)
    raise TypeError(w.MSG_BAD_VALUE_TYPE.format(name=name, type_name=type(value).__name__))


cdef inline int _put_param_header(Scratch* s, uint32_t name_word, Py_ssize_t size, int type_id) noexcept:
    # The caller reserved the room and checked that size fits in 24 bits of words.
    _put32(s.p + s.n, name_word)
    _put32(s.p + s.n + 4, (<uint32_t>(size >> 2)) | (<uint32_t>type_id << 24))
    s.n += PARAM_HEADER_SIZE
    return 0


cdef int64_t _encode_i32(object name, object value) except? -1:
    cdef long long v
    try:
        v = PyLong_AsLongLong(value)
    except OverflowError:
        v = 1LL << 40
    if v < -0x80000000 or v > 0x7FFFFFFF:
        raise ValueError(w.MSG_OUT_OF_RANGE.format(name=name, value=value, ncp_type="i32"))
    return v


cdef uint64_t _encode_unsigned(object name, object value, uint64_t limit,
                               str ncp_type) except? 0xFFFFFFFFFFFFFFFF:
    cdef unsigned long long v
    try:
        v = PyLong_AsUnsignedLongLong(value)
    except OverflowError:
        raise ValueError(w.MSG_OUT_OF_RANGE.format(name=name, value=value, ncp_type=ncp_type)) from None
    if v > limit:
        raise ValueError(w.MSG_OUT_OF_RANGE.format(name=name, value=value, ncp_type=ncp_type))
    return v


cdef int64_t _encode_i64(object name, object value) except? -1:
    try:
        return PyLong_AsLongLong(value)
    except OverflowError:
        raise ValueError(w.MSG_OUT_OF_RANGE.format(name=name, value=value, ncp_type="i64")) from None


cdef uint32_t _encode_f32(object name, object value) except? 0xFFFFFFFF:
    cdef double x = PyFloat_AsDouble(value)
    cdef float y = <float>x
    cdef uint32_t bits
    if ncp_isinf(y) and not ncp_isinf(x):
        raise ValueError(w.MSG_OUT_OF_RANGE.format(name=name, value=value, ncp_type="f32"))
    memcpy(&bits, &y, 4)
    return bits


cdef inline uint64_t _f64_bits(object value) except? 0xFFFFFFFFFFFFFFFF:
    cdef double x = PyFloat_AsDouble(value)
    cdef uint64_t bits
    memcpy(&bits, &x, 8)
    return bits


cdef int _put_scalar32(Scratch* s, uint32_t name_word, int type_id, uint32_t bits) except -1:
    _reserve(s, 12)
    _put_param_header(s, name_word, 12, type_id)
    _put32(s.p + s.n, bits)
    s.n += 4
    return 0


cdef int _put_scalar64(Scratch* s, uint32_t name_word, int type_id, uint64_t bits) except -1:
    _reserve(s, 16)
    _put_param_header(s, name_word, 16, type_id)
    _put64(s.p + s.n, bits)
    s.n += 8
    return 0


cdef int _copy_into(Scratch* s, object data, Py_ssize_t size) except -1:
    """Copies ``size`` bytes of the bytes-like ``data`` to the scratch buffer (room reserved)."""
    cdef Py_buffer view
    if PyBytes_CheckExact(data):
        if PyBytes_GET_SIZE(data) != size:
            raise RuntimeError("a value changed size while it was being encoded")
        memcpy(s.p + s.n, PyBytes_AS_STRING(data), size)
    else:
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if view.len != size:
                raise RuntimeError("a value changed size while it was being encoded")
            memcpy(s.p + s.n, view.buf, size)
        finally:
            PyBuffer_Release(&view)
    s.n += size
    return 0


cdef Py_ssize_t _put_string(Scratch* s, uint32_t name_word, object name, object value) except -1:
    """Writes a string param; returns its size."""
    cdef Py_ssize_t str_size, data_size, padding, param_size
    cdef const char* utf8
    try:
        utf8 = PyUnicode_AsUTF8AndSize(value, &str_size)
    except UnicodeEncodeError:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as ex:
            raise ValueError(w.MSG_NOT_UTF8.format(name=name, error=ex)) from None
        raise
    if memchr(utf8, 0, str_size) != NULL:
        raise ValueError(w.MSG_NUL_IN_STRING.format(name=name))
    data_size = str_size + 1
    padding = (-data_size) & 3
    param_size = PARAM_HEADER_SIZE + data_size + padding
    if (param_size >> 2) > MAX_FIELD_WORDS:
        raise ValueError(w.MSG_PARAM_TOO_LARGE.format(name=name, size=data_size))
    _reserve(s, param_size)
    _put_param_header(s, name_word, param_size, T_STRING)
    memcpy(s.p + s.n, utf8, str_size)
    memset(s.p + s.n + str_size, 0, 1 + padding)
    s.n += data_size + padding
    return param_size


cdef int64_t _timestamp_seconds(object timestamp) except? -1:
    cdef int64_t days
    if type(timestamp) is _py_datetime_type and datetime_tzinfo(timestamp) is _UTC:
        days = _days_from_civil(datetime_year(timestamp), datetime_month(timestamp), datetime_day(timestamp))
        return (
            days * 86400
            + datetime_hour(timestamp) * 3600
            + datetime_minute(timestamp) * 60
            + datetime_second(timestamp)
        )
    if timestamp.tzinfo is None:
        return int(timestamp.timestamp() // 1)
    delta = timestamp - _EPOCH
    return delta.days * 86400 + delta.seconds


cdef inline int64_t _exact_u32(object value) noexcept:
    """``value`` if it is an exact int in u32 range, else -1 (the caller then looks closer)."""
    cdef int overflow = 0
    cdef long long v
    if not PyLong_CheckExact(value):
        return -1
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < 0 or v > 0xFFFFFFFF:
        return -1
    return v


cdef int _put_header(Scratch* s, object packet_type, object packet_id, object timestamp, object info,
                     int64_t packet_size) except -1:
    cdef uint32_t type_word = _encode_identifier(packet_type, "packet type")
    cdef int64_t seconds
    cdef Py_ssize_t info_n
    cdef unsigned char* p
    cdef int64_t id_value = _exact_u32(packet_id)
    if id_value < 0:
        if not isinstance(packet_id, int):
            raise TypeError(w.MSG_PACKET_ID_TYPE.format(type_name=type(packet_id).__name__))
        if not 0 <= packet_id <= 0xFFFFFFFF:
            raise ValueError(w.MSG_PACKET_ID_RANGE.format(packet_id=packet_id))
        id_value = PyLong_AsUnsignedLongLong(int(packet_id))
    if not PyDateTime_Check(timestamp):
        raise TypeError(w.MSG_TIMESTAMP_TYPE.format(type_name=type(timestamp).__name__))
    seconds = _timestamp_seconds(timestamp)
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise ValueError(w.MSG_TIMESTAMP_RANGE.format(timestamp=timestamp))
    if not PyBytes_CheckExact(info):
        if not isinstance(info, (bytes, bytearray, memoryview)):
            raise TypeError(w.MSG_INFO_TYPE.format(type_name=type(info).__name__))
        info = bytes(info)
    info_n = PyBytes_GET_SIZE(info)
    if info_n > 4:
        raise ValueError(w.MSG_INFO_SIZE.format(size=info_n))
    if (packet_size >> 2) > 0xFFFFFFFF:
        raise ValueError(w.MSG_PACKET_TOO_LARGE.format(size=packet_size))
    p = s.p
    _put32(p, HEADER_MAGIC_WORD)
    _put32(p + 4, type_word)
    _put32(p + 8, <uint32_t>(packet_size >> 2))
    _put32(p + 12, <uint32_t>id_value)
    _put32(p + 16, 1)
    _put32(p + 20, <uint32_t>seconds)
    _put32(p + 24, <uint32_t>(datetime_microsecond(timestamp) * 1000))
    memset(p + 28, 0, 4)
    memcpy(p + 28, PyBytes_AS_STRING(info), info_n)
    return 0


cdef object _encode(object packet_type, object packet_id, object timestamp, object info, object fields,
                    bint as_buffers):
    cdef unsigned char stack[STACK_SIZE]
    cdef Scratch s
    cdef list bulk = None  # [(offset in scratch, value's bytes-like, size)]
    cdef int64_t bulk_size = 0
    cdef int64_t packet_size = MIN_PACKET_SIZE
    cdef int64_t field_size
    cdef Py_ssize_t field_header, data_size, padding, param_size, pos, off, size
    cdef uint32_t name_word
    cdef int type_id
    cdef int64_t id_value
    cdef unsigned char* out_p
    cdef Py_buffer view
    cdef Py_ssize_t items = 0  # fields and params, at most MAX_PACKET_ITEMS
    s.p = stack
    s.n = HEADER_SIZE
    s.cap = STACK_SIZE
    s.heap = NULL
    try:
        for field_name, field_id, params in fields:
            items += 1
            if items > MAX_PACKET_ITEMS:
                raise ValueError(w.MSG_TOO_MANY_ITEMS_TO_SEND.format(limit=MAX_PACKET_ITEMS))
            _reserve(&s, FIELD_HEADER_SIZE)
            field_header = s.n
            s.n += FIELD_HEADER_SIZE
            field_size = FIELD_HEADER_SIZE
            for param_name, value in params:
                items += 1
                if items > MAX_PACKET_ITEMS:
                    raise ValueError(w.MSG_TOO_MANY_ITEMS_TO_SEND.format(limit=MAX_PACKET_ITEMS))
                name_word = _encode_identifier(param_name, "param name")
                # Same order of type tests as the pure-Python codec: bool and the wrappers are
                # subclasses of int and float.
                if PyLong_CheckExact(value) or PyBool_Check(value):
                    _put_scalar32(&s, name_word, T_I32, <uint32_t><int32_t>_encode_i32(param_name, value))
                    field_size += 12
                    continue
                if PyUnicode_CheckExact(value):
                    field_size += _put_string(&s, name_word, param_name, value)
                    continue
                if PyFloat_CheckExact(value):
                    _put_scalar32(&s, name_word, T_F32, _encode_f32(param_name, value))
                    field_size += 12
                    continue
                if isinstance(value, _u32):
                    _put_scalar32(
                        &s, name_word, T_U32, <uint32_t>_encode_unsigned(param_name, value, 0xFFFFFFFF, "u32")
                    )
                    field_size += 12
                    continue
                if isinstance(value, _i64):
                    _put_scalar64(&s, name_word, T_I64, <uint64_t>_encode_i64(param_name, value))
                    field_size += 16
                    continue
                if isinstance(value, _u64):
                    _put_scalar64(
                        &s, name_word, T_U64, _encode_unsigned(param_name, value, 0xFFFFFFFFFFFFFFFFu, "u64")
                    )
                    field_size += 16
                    continue
                if isinstance(value, _f64):
                    _put_scalar64(&s, name_word, T_F64, _f64_bits(value))
                    field_size += 16
                    continue
                if isinstance(value, int):
                    _put_scalar32(&s, name_word, T_I32, <uint32_t><int32_t>_encode_i32(param_name, value))
                    field_size += 12
                    continue
                if isinstance(value, float):
                    _put_scalar32(&s, name_word, T_F32, _encode_f32(param_name, value))
                    field_size += 12
                    continue
                if isinstance(value, str):
                    field_size += _put_string(&s, name_word, param_name, value)
                    continue
                type_obj, data = _buffer_data(param_name, value)
                type_id = type_obj
                data_size = len(data)
                padding = (-data_size) & 3
                param_size = PARAM_HEADER_SIZE + data_size + padding
                if (param_size >> 2) > MAX_FIELD_WORDS:
                    raise ValueError(w.MSG_PARAM_TOO_LARGE.format(name=param_name, size=data_size))
                if data_size >= BULK_MIN:
                    _reserve(&s, PARAM_HEADER_SIZE + padding)
                    _put_param_header(&s, name_word, param_size, type_id)
                    if bulk is None:
                        bulk = []
                    if as_buffers and not PyBytes_CheckExact(data) and not isinstance(data, memoryview):
                        data = memoryview(data)
                    bulk.append((s.n, data, data_size))
                    bulk_size += data_size
                else:
                    _reserve(&s, param_size)
                    _put_param_header(&s, name_word, param_size, type_id)
                    _copy_into(&s, data, data_size)
                memset(s.p + s.n, 0, padding)
                s.n += padding
                field_size += param_size
            if (field_size >> 2) > MAX_FIELD_WORDS:
                raise ValueError(w.MSG_FIELD_TOO_LARGE.format(name=field_name, size=field_size))
            name_word = _encode_identifier(field_name, "field name")
            id_value = _exact_u32(field_id)
            if id_value < 0:
                if type(field_id) is not int and not isinstance(field_id, int):
                    raise TypeError(
                        w.MSG_FIELD_ID_TYPE.format(name=field_name, type_name=type(field_id).__name__)
                    )
                if not 0 <= field_id <= 0xFFFFFFFF:
                    raise ValueError(w.MSG_FIELD_ID_RANGE.format(name=field_name, field_id=field_id))
                id_value = PyLong_AsUnsignedLongLong(int(field_id))
            _put32(s.p + field_header, name_word)
            _put32(s.p + field_header + 4, <uint32_t>(field_size >> 2))
            _put32(s.p + field_header + 8, <uint32_t>id_value)
            packet_size += field_size
        _put_header(&s, packet_type, packet_id, timestamp, info, packet_size)
        _reserve(&s, FOOTER_SIZE)
        memset(s.p + s.n, 0, 4)
        _put32(s.p + s.n + 4, FOOTER_MAGIC_WORD)
        s.n += FOOTER_SIZE
        if s.n + bulk_size != packet_size:  # pragma: no cover - an internal inconsistency
            raise RuntimeError("encoded size does not match the packet size")
        if bulk is None:
            result = PyBytes_FromStringAndSize(<char*>s.p, s.n)
            return [result] if as_buffers else result
        if as_buffers:
            pieces = []
            pos = 0
            for off, data, _size in bulk:
                pieces.append(PyBytes_FromStringAndSize(<char*>s.p + pos, off - pos))
                pieces.append(data)
                pos = off
            pieces.append(PyBytes_FromStringAndSize(<char*>s.p + pos, s.n - pos))
            return pieces
        result = PyBytes_FromStringAndSize(NULL, s.n + bulk_size)
        out_p = <unsigned char*>PyBytes_AS_STRING(result)
        pos = 0
        for off, data, size in bulk:
            memcpy(out_p, s.p + pos, off - pos)
            out_p += off - pos
            pos = off
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                if view.len != size:
                    raise RuntimeError("a value changed size while it was being encoded")
                memcpy(out_p, view.buf, size)
            finally:
                PyBuffer_Release(&view)
            out_p += size
        memcpy(out_p, s.p + pos, s.n - pos)
        return result
    finally:
        if s.heap != NULL:
            free(s.heap)


def encode_packet_buffers(packet_type, packet_id, timestamp, info, fields):
    """
    Encode a packet as a list of buffers; see :func:`ncplib.packets.encode_packet_buffers`.

    Values of at least 512 bytes appear in the list as views (or the value itself, for bytes),
    not copies; everything else is coalesced into bytes objects.
    """
    return _encode(packet_type, packet_id, timestamp, info, fields, True)


def encode_packet(packet_type, packet_id, timestamp, info, fields):
    """Encode a packet as bytes; see :func:`ncplib.packets.encode_packet`."""
    return _encode(packet_type, packet_id, timestamp, info, fields, False)


# Decoding.

cdef uint32_t _id_keys[ID_CACHE_SLOTS]
cdef PyObject* _id_values[ID_CACHE_SLOTS]  # owned references, or NULL
memset(_id_values, 0, sizeof(_id_values))


cdef inline object _decode_identifier(const unsigned char* p):
    """The identifier at ``p`` (4 bytes): trailing NUL and space stripped, Latin-1."""
    cdef uint32_t word = _le32(p)
    cdef uint32_t slot = (word * 2654435761u) >> 22
    cdef PyObject* cached = _id_values[slot]
    cdef Py_ssize_t n = 4
    if cached != NULL and _id_keys[slot] == word:
        return <object>cached
    while n > 0 and (p[n - 1] == 0 or p[n - 1] == 32):
        n -= 1
    value = PyUnicode_DecodeLatin1(<const char*>p, n, NULL)
    Py_INCREF(value)
    _id_values[slot] = <PyObject*>value
    _id_keys[slot] = word
    Py_XDECREF(cached)
    return value


cdef object _last_timestamp = None
cdef uint64_t _last_timestamp_key = 0


cdef object _decode_timestamp(uint32_t seconds, uint32_t micros):
    global _last_timestamp, _last_timestamp_key
    cdef uint64_t key = (<uint64_t>seconds << 20) | micros
    cdef int year, month, day
    cdef uint32_t rem = seconds % 86400
    if _last_timestamp is not None and _last_timestamp_key == key:
        return _last_timestamp
    _civil_from_days(seconds // 86400, &year, &month, &day)
    value = datetime_new(year, month, day, rem // 3600, (rem // 60) % 60, rem % 60, micros, _UTC)
    _last_timestamp = value
    _last_timestamp_key = key
    return value


cdef object _decode_string(const unsigned char* p, Py_ssize_t n):
    cdef const void* nul = memchr(p, 0, n)
    if nul != NULL:
        n = <const unsigned char*>nul - p
    try:
        return PyUnicode_DecodeUTF8(<const char*>p, n, NULL)
    except UnicodeDecodeError:
        pass
    _warn(_DecodeWarning(w.WARN_BAD_UTF8), stacklevel=1)
    return PyUnicode_DecodeUTF8(<const char*>p, n, "replace")


cdef object _numpy_module():
    global _numpy
    if _numpy is None:
        import numpy

        _numpy = numpy
    return _numpy


cdef object _decode_data(int type_id, const unsigned char* p, Py_ssize_t data_start, Py_ssize_t size,
                         object numpy_view, object name):
    cdef Py_ssize_t itemsize = _data_itemsize[type_id]
    cdef carray.array value
    if size % itemsize:
        _warn(
            _DecodeWarning(
                w.WARN_PARTIAL_ITEM.format(name=name, size=size, itemsize=itemsize)
            ),
            stacklevel=1,
        )
        size -= size % itemsize
    if numpy_view is not None:
        numpy = _numpy_module()
        dtype = _data_dtypes[type_id]
        if dtype is None:
            dtype = _data_dtypes[type_id] = numpy.dtype(_data_dtype_names[type_id])
        return numpy.frombuffer(numpy_view, dtype, size // itemsize, data_start)
    value = carray.clone(<carray.array>_data_templates[type_id], size // itemsize, False)
    if size:
        memcpy(value.data.as_voidptr, p + data_start, size)
        if _BIG_ENDIAN_HOST and itemsize > 1:
            value.byteswap()
    return value


cdef object _numpy_view_of(object source):
    view = memoryview(source)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view.toreadonly()


cdef object _decode(const unsigned char* p, Py_ssize_t size, object source, bint use_numpy):
    cdef uint32_t size_words, packet_id, seconds, nanos, field_word, param_word, type_id, field_id
    cdef Py_ssize_t end, pos, field_end, field_size, param_size, param_end, data_start
    cdef Py_ssize_t items = 0
    cdef list fields, params
    cdef object numpy_view = None
    if size < MIN_PACKET_SIZE:
        raise _DecodeError(w.MSG_PACKET_TOO_SHORT.format(size=size))
    if _le32(p) != HEADER_MAGIC_WORD:
        raise _DecodeError(w.bad_magic_message(
            PyBytes_FromStringAndSize(<const char*>p, min(size, <Py_ssize_t>(w.NOT_NCP_HEAD_SIZE + 1)))
        ))
    size_words = _le32(p + 8)
    if <uint64_t>size_words * 4 != <uint64_t>size:
        raise _DecodeError(
            w.MSG_PACKET_SIZE_MISMATCH.format(header_size=<uint64_t>size_words * 4, size=size)
        )
    if _le32(p + size - 4) != FOOTER_MAGIC_WORD:
        raise _DecodeError(
            w.MSG_BAD_FOOTER.format(footer=PyBytes_FromStringAndSize(<const char*>p + size - 4, 4).hex())
        )
    nanos = _le32(p + 24)
    if nanos > 999999999:
        raise _DecodeError(w.MSG_BAD_NANOSECONDS.format(nanos=nanos))
    packet_id = _le32(p + 12)
    seconds = _le32(p + 20)
    timestamp = _decode_timestamp(seconds, nanos // 1000)
    if use_numpy:
        # numpy views of bytes are read-only already; anything else goes through a read-only view.
        numpy_view = source if PyBytes_CheckExact(source) else _numpy_view_of(source)
    fields = []
    end = size - FOOTER_SIZE
    pos = HEADER_SIZE
    while pos < end:
        if end - pos < FIELD_HEADER_SIZE:
            raise _DecodeError(w.MSG_FIELD_HEADER_OVERRUN.format(pos=pos))
        items += 1
        if items > MAX_PACKET_ITEMS:
            raise _DecodeError(w.MSG_TOO_MANY_ITEMS.format(limit=MAX_PACKET_ITEMS, pos=pos))
        field_word = _le32(p + pos + 4)
        field_size = <Py_ssize_t>(field_word & 0xFFFFFF) * 4
        if field_size < FIELD_HEADER_SIZE:
            raise _DecodeError(w.MSG_FIELD_SIZE.format(pos=pos, size=field_size))
        field_end = pos + field_size
        if field_end > end:
            raise _DecodeError(w.MSG_FIELD_OVERFLOW.format(pos=pos, excess=field_end - end))
        field_name = _decode_identifier(p + pos)
        field_id = _le32(p + pos + 8)
        params = []
        pos += FIELD_HEADER_SIZE
        while pos < field_end:
            if field_end - pos < PARAM_HEADER_SIZE:
                raise _DecodeError(w.MSG_PARAM_HEADER_OVERRUN.format(pos=pos))
            items += 1
            if items > MAX_PACKET_ITEMS:
                raise _DecodeError(w.MSG_TOO_MANY_ITEMS.format(limit=MAX_PACKET_ITEMS, pos=pos))
            if _le32(p + pos) == 0 and _le32(p + pos + 4) == FOOTER_MAGIC_WORD:
                _warn(_DecodeWarning(w.WARN_EMBEDDED_FOOTER.format(pos=pos)), stacklevel=1)
                pos += 8
                continue
            param_word = _le32(p + pos + 4)
            param_size = <Py_ssize_t>(param_word & 0xFFFFFF) * 4
            if param_size < PARAM_HEADER_SIZE:
                raise _DecodeError(w.MSG_PARAM_SIZE.format(pos=pos, size=param_size))
            param_end = pos + param_size
            if param_end > field_end:
                raise _DecodeError(
                    w.MSG_PARAM_OVERFLOW.format(pos=pos, excess=param_end - field_end)
                )
            type_id = param_word >> 24
            name = _decode_identifier(p + pos)
            data_start = pos + PARAM_HEADER_SIZE
            if type_id == T_I32:
                if param_end - data_start < 4:
                    raise _DecodeError(w.MSG_PARAM_TOO_SHORT.format(name=name, pos=pos))
                value = <long>(<int32_t>_le32(p + data_start))
            elif type_id == T_STRING:
                value = _decode_string(p + data_start, param_end - data_start)
            elif type_id == T_U32 or type_id == T_F32:
                if param_end - data_start < 4:
                    raise _DecodeError(w.MSG_PARAM_TOO_SHORT.format(name=name, pos=pos))
                if type_id == T_U32:
                    value = _u32(PyLong_FromUnsignedLong(_le32(p + data_start)))
                else:
                    value = PyFloat_FromDouble(_f32_from_bits(_le32(p + data_start)))
            elif type_id == T_I64 or type_id == T_U64 or type_id == T_F64:
                if param_end - data_start < 8:
                    raise _DecodeError(w.MSG_PARAM_TOO_SHORT.format(name=name, pos=pos))
                if type_id == T_I64:
                    value = _i64(PyLong_FromLongLong(<int64_t>_le64(p + data_start)))
                elif type_id == T_U64:
                    value = _u64(PyLong_FromUnsignedLongLong(_le64(p + data_start)))
                else:
                    value = _f64(PyFloat_FromDouble(_f64_from_bits(_le64(p + data_start))))
            elif type_id == T_RAW:
                value = PyBytes_FromStringAndSize(<const char*>p + data_start, param_end - data_start)
            elif _data_itemsize[type_id]:
                value = _decode_data(type_id, p, data_start, param_end - data_start, numpy_view, name)
            else:
                _warn(
                    _DecodeWarning(w.WARN_UNKNOWN_TYPE.format(name=name, type_id=type_id)),
                    stacklevel=1,
                )
                value = PyBytes_FromStringAndSize(<const char*>p + data_start, param_end - data_start)
            params.append((name, value))
            pos = param_end
        fields.append((field_name, PyLong_FromUnsignedLong(field_id), params))
    return (
        _decode_identifier(p + 4),
        PyLong_FromUnsignedLong(packet_id),
        timestamp,
        PyBytes_FromStringAndSize(<const char*>p + 28, 4),
        fields,
    )


cdef inline double _f32_from_bits(uint32_t bits) noexcept:
    cdef float x
    memcpy(&x, &bits, 4)
    return x


cdef inline double _f64_from_bits(uint64_t bits) noexcept:
    cdef double x
    memcpy(&x, &bits, 8)
    return x


def decode_packet(buf, use_numpy=False):
    """
    Decode one packet; see :func:`ncplib.packets.decode_packet`.

    :raises ncplib.DecodeError: if the packet is malformed.
    :raises TypeError: if ``buf`` is not a bytes-like object.
    """
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef bint numpy_mode = bool(use_numpy)
    if PyBytes_CheckExact(buf):
        return _decode(<const unsigned char*>PyBytes_AS_STRING(buf), PyBytes_GET_SIZE(buf), buf, numpy_mode)
    try:
        PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    except (TypeError, BufferError, ValueError):
        # Not a buffer at all, or one that is not C-contiguous: decode a contiguous copy.
        try:
            mv = memoryview(buf)
        except TypeError:
            raise TypeError(w.MSG_BUFFER_TYPE.format(type_name=type(buf).__name__)) from None
        copy = mv.tobytes()
        p = <const unsigned char*>PyBytes_AS_STRING(copy)
        return _decode(p, PyBytes_GET_SIZE(copy), copy, numpy_mode)
    try:
        return _decode(<const unsigned char*>view.buf, view.len, buf, numpy_mode)
    finally:
        PyBuffer_Release(&view)


include "_framing.pxi"
include "_receive.pxi"
include "_tap.pxi"
