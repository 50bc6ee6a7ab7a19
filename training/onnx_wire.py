"""The few ONNX protobuf messages a closecast graph is made of, written as protobuf wire bytes.

Why not ``onnx.helper``: importing the ``onnx`` package loads ``ml_dtypes`` and costs a training run about
0.4x of ``import torch`` (more than everything after the fit), to write a file of a dozen messages. The
encoding below is protobuf's (proto2, as ``onnx.proto`` is: repeated integers unpacked; fields in
field-number order, as protobuf's own serializer writes them), and ``tests/training/test_export_graph.py``
checks that it yields the very bytes ``onnx.helper`` builds, and that ``onnx.checker`` accepts them.
Field numbers are those of ``onnx/onnx.proto``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FLOAT, INT64 = 1, 7  # TensorProto.DataType
ATTR_INT, ATTR_STRING, ATTR_INTS = 2, 3, 7  # AttributeProto.AttributeType
Attr = int | str | Sequence[int]
_DATA_TYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64s: two's complement, ten bytes
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    a = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    dims = b"".join(_int(1, d) for d in a.shape)
    return dims + _int(2, _DATA_TYPES[np.dtype(array.dtype)]) + _str(8, name) + _bytes(9, a.tobytes())


def attribute(name: str, value: Attr) -> bytes:
    """AttributeProto: name (1), i (3) | s (4) | ints (8), type (20)."""
    if isinstance(value, int):
        return _str(1, name) + _int(3, value) + _int(20, ATTR_INT)
    if isinstance(value, str):
        return _str(1, name) + _str(4, value) + _int(20, ATTR_STRING)
    return _str(1, name) + b"".join(_int(8, v) for v in value) + _int(20, ATTR_INTS)


def node(
    op_type: str, inputs: Sequence[str], outputs: Sequence[str], **attrs: int | str | Sequence[int]
) -> bytes:
    """NodeProto: input (1), output (2), op_type (4), attribute (5, sorted by name as onnx.helper does)."""
    body = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(4, op_type)
    return body + b"".join(_bytes(5, attribute(k, v)) for k, v in sorted(attrs.items()))


def value_info(name: str, shape: Sequence[int | str], elem_type: int = FLOAT) -> bytes:
    """ValueInfoProto of a tensor: a dimension is a size (dim_value) or a name (dim_param)."""
    dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)  # TypeProto.Tensor: elem_type, shape
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))  # name, type (TypeProto.tensor_type)


def graph(
    nodes: Sequence[bytes],
    name: str,
    inputs: Sequence[bytes],
    outputs: Sequence[bytes],
    inits: Sequence[bytes],
) -> bytes:
    """GraphProto: node (1), name (2), initializer (5), input (11), output (12)."""
    body = b"".join(_bytes(1, n) for n in nodes) + _str(2, name)
    body += b"".join(_bytes(5, t) for t in inits)
    return body + b"".join(_bytes(11, i) for i in inputs) + b"".join(_bytes(12, o) for o in outputs)


def model(graph_bytes: bytes, *, ir_version: int, opset: int, producer: str, producer_version: str) -> bytes:
    """ModelProto: ir_version (1), producer_name (2), producer_version (3), graph (7), opset_import (8)."""
    opset_id = _str(1, "") + _int(2, opset)  # the default domain, ai.onnx
    head = _int(1, ir_version) + _str(2, producer) + _str(3, producer_version)
    return head + _bytes(7, graph_bytes) + _bytes(8, opset_id)
