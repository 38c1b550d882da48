"""numpy mode: zero-copy read-only views on decode; numpy arrays of every NCP dtype on encode."""

from __future__ import annotations

import array
from types import ModuleType
from typing import Any

import pytest
from codec_modules import CODECS, TS

from ncplib import _wire

numpy = pytest.importorskip("numpy")

#: Data type id -> numpy dtype the decoder must produce.
DTYPES = {type_id: numpy.dtype(dtype) for type_id, (_, dtype, _) in _wire.DATA_TYPES.items()}


def packet_with(*values: Any) -> tuple[Any, ...]:
    return ("DSPC", 1, TS, b"", [("TIME", 3, [(f"V{i}", v) for i, v in enumerate(values)])])


def decoded_values(codec: ModuleType, wire: Any) -> list[Any]:
    return [value for _, value in codec.decode_packet(wire, use_numpy=True)[4][0][2]]


@CODECS
@pytest.mark.parametrize("type_id", sorted(_wire.DATA_TYPES), ids=lambda t: _wire.DATA_TYPES[t][1])
@pytest.mark.parametrize(
    "make_buffer",
    [bytes, bytearray, lambda b: memoryview(bytearray(b))],
    ids=["bytes", "bytearray", "memoryview"],
)
def test_decoded_arrays_are_read_only_views_of_the_buffer(
    codec: ModuleType, type_id: int, make_buffer: Any
) -> None:
    dtype = DTYPES[type_id]
    info = numpy.iinfo(dtype) if dtype.kind in "iu" else numpy.finfo(dtype)
    sent = numpy.array([info.min, 0, 1, info.max] * 50, dtype=dtype)
    buf = make_buffer(codec.encode_packet(*packet_with(1, sent, "after")))
    one, value, after = decoded_values(codec, buf)
    assert (one, after) == (1, "after")
    assert isinstance(value, numpy.ndarray)
    assert value.dtype == dtype
    assert not value.flags.writeable
    assert numpy.shares_memory(value, numpy.frombuffer(buf, dtype=numpy.uint8))
    assert numpy.array_equal(value, sent)


@CODECS
def test_padding_and_partial_items_in_numpy_mode(codec: ModuleType) -> None:
    wire = codec.encode_packet(*packet_with(numpy.array([1, 2, 3], dtype=numpy.uint8), array.array("H", [7])))
    u8, u16 = decoded_values(codec, wire)
    assert u8.tolist() == [1, 2, 3, 0]  # the padded area, as for array.array
    assert u16.tolist() == [7, 0]


@CODECS
def test_empty_data_params_in_numpy_mode(codec: ModuleType) -> None:
    wire = codec.encode_packet(*packet_with(numpy.zeros(0, dtype="<f8"), array.array("b")))
    f8, i1 = decoded_values(codec, wire)
    assert (f8.dtype, f8.size, i1.dtype, i1.size) == (numpy.dtype("<f8"), 0, numpy.dtype("i1"), 0)


@CODECS
def test_array_mode_is_unchanged_by_numpy(codec: ModuleType) -> None:
    wire = codec.encode_packet(*packet_with(numpy.arange(4, dtype=numpy.int16)))
    value = codec.decode_packet(wire)[4][0][2][0][1]
    assert isinstance(value, array.array)
    assert value.tolist() == [0, 1, 2, 3]


@CODECS
@pytest.mark.parametrize("dtype", ["u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8"])
@pytest.mark.parametrize("order", ["<", ">", "="])
def test_numpy_arrays_of_every_dtype_and_byte_order_encode(codec: ModuleType, dtype: str, order: str) -> None:
    native = numpy.arange(-5, 15).astype(dtype)
    value = native.astype(numpy.dtype(order + dtype))
    wire = codec.encode_packet(*packet_with(value))
    (decoded,) = decoded_values(codec, wire)
    assert decoded.dtype == numpy.dtype("<" + dtype)
    count = len(native)
    assert numpy.array_equal(decoded[:count], native)
    # The same bytes as the array.array of the same type would give.
    typecode = _wire.DATA_TYPES[_wire.DTYPE_TO_TYPE[(native.dtype.kind, native.dtype.itemsize)]][0]
    assert wire == codec.encode_packet(*packet_with(array.array(typecode, native.tolist())))


@CODECS
def test_non_contiguous_and_multidimensional_arrays_encode_in_c_order(codec: ModuleType) -> None:
    base = numpy.arange(60, dtype=numpy.int32).reshape(6, 10)
    for value in (base[:, ::3], base.T, base[::2], numpy.asfortranarray(base), base.reshape(3, 4, 5)):
        (decoded,) = decoded_values(codec, codec.encode_packet(*packet_with(value)))
        assert numpy.array_equal(decoded, numpy.ascontiguousarray(value).ravel())


@CODECS
@pytest.mark.parametrize(
    "value",
    [
        numpy.zeros(4, dtype=bool),
        numpy.zeros(2, dtype=numpy.complex64),
        numpy.array(["ab"]),
        numpy.array([b"ab"]),
        numpy.array([None], dtype=object),
        numpy.zeros(2, dtype="f2"),
        numpy.zeros(2, dtype="M8[s]"),
    ],
    ids=lambda v: str(v.dtype),
)
def test_numpy_dtypes_without_ncp_type_raise_type_error(codec: ModuleType, value: Any) -> None:
    with pytest.raises(TypeError, match="'V0'"):
        codec.encode_packet(*packet_with(value))


@CODECS
def test_buffers_hold_a_view_of_a_large_numpy_array_not_a_copy(codec: ModuleType) -> None:
    value = numpy.arange(300_000, dtype=numpy.int16)
    buffers = codec.encode_packet_buffers(*packet_with(value))
    views = [b for b in buffers if numpy.shares_memory(numpy.frombuffer(b, dtype=numpy.uint8), value)]
    assert len(views) == 1
    assert isinstance(views[0], memoryview)
    assert len(views[0]) == value.nbytes
    assert sum(len(b) for b in buffers) == 40 + 12 + 8 + value.nbytes


@CODECS
def test_large_numpy_packet_decodes_without_copying(codec: ModuleType) -> None:
    value = numpy.arange(2**19, dtype=numpy.int16)
    buf = bytearray(codec.encode_packet(*packet_with(value)))
    (decoded,) = decoded_values(codec, buf)
    assert numpy.shares_memory(decoded, numpy.frombuffer(buf, dtype=numpy.uint8))
    assert numpy.array_equal(decoded, value)


@CODECS
def test_numpy_views_keep_the_buffer_alive(codec: ModuleType) -> None:
    (decoded,) = decoded_values(
        codec, bytearray(codec.encode_packet(*packet_with(numpy.arange(8, dtype="<u8"))))
    )
    assert decoded.tolist() == list(range(8))
