"""Integer weights: per-output-channel symmetric quantization and the byte layout the C
kernels read.

int8 weights are one ``int8_t`` each. int4 weights are packed two per byte, the even
element in the low nibble (two's complement), and every row starts on a byte: a row of odd
length ends with a zero nibble. A *row* is what a kernel reads contiguously: one input's
column of output weights for the spike-fed layers, one output's weights for the analog
first layer and the head (see each op's ``weight_layout``).
"""

from __future__ import annotations

import numpy as np

PRECISIONS = ("fp32", "int8", "int4")
BITS = {"int8": 8, "int4": 4}
QMAX = {8: 127, 4: 7}
# packed arrays are padded to whole words: the compiler word-aligns byte arrays and the
# int32 arrays after them, and padding keeps the flash section exactly the planned bytes
ARRAY_ALIGN = 4


def quantize_per_channel(weight: np.ndarray, bits: int, axis_max: np.ndarray | None = None):
    """``weight`` [out, ...] -> (q int8 [out, ...], scale float64 [out]) with
    ``weight ≈ scale[c] * q[c]``, symmetric, scale = max|w_c| / qmax. A channel of zeros
    gets scale 1 (its q are all zero either way)."""
    w = np.asarray(weight, np.float64)
    qmax = QMAX[bits]
    peak = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if axis_max is None else axis_max
    scale = np.where(peak > 0, peak / qmax, 1.0)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = np.clip(np.rint(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def quantize_per_tensor(weight: np.ndarray, bits: int):
    """One scale for the whole tensor (the head: its class scores must share units)."""
    w = np.asarray(weight, np.float64)
    peak = np.abs(w).max()
    return quantize_per_channel(w, bits, np.full(w.shape[0], peak))


def row_bytes(row_len: int, bits: int) -> int:
    return row_len if bits == 8 else (row_len + 1) // 2


def packed_bytes(rows: int, row_len: int, bits: int) -> int:
    """Bytes of ``rows`` rows of ``row_len`` weights at ``bits`` (fp32: bits 32)."""
    if bits == 32:
        return rows * row_len * 4
    return rows * row_bytes(row_len, bits)


def stored_bytes(rows: int, row_len: int, bits: int) -> int:
    """``packed_bytes`` as the array sits in flash: padded to a whole word."""
    n = packed_bytes(rows, row_len, bits)
    return (n + ARRAY_ALIGN - 1) // ARRAY_ALIGN * ARRAY_ALIGN


def padded(data: np.ndarray) -> np.ndarray:
    """Packed bytes with the zero padding ``stored_bytes`` counts."""
    extra = -len(data) % ARRAY_ALIGN
    return np.concatenate([data, np.zeros(extra, np.uint8)]) if extra else data


def pack(rows: np.ndarray, bits: int) -> np.ndarray:
    """[rows, row_len] int8 values -> the bytes the kernels read (uint8 array)."""
    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise ValueError("pack takes a 2-D array of rows")
    if bits == 8:
        return rows.astype(np.int8).view(np.uint8).reshape(-1).copy()
    qmax = QMAX[4]
    if rows.size and (rows.min() < -qmax - 1 or rows.max() > qmax):
        raise ValueError("int4 values must lie in [-8, 7]")
    n, length = rows.shape
    padded = np.zeros((n, length + (length & 1)), np.int16)
    padded[:, :length] = rows
    nibbles = (padded & 0xF).astype(np.uint8)
    return (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).reshape(-1)


def unpack(data: np.ndarray, rows: int, row_len: int, bits: int) -> np.ndarray:
    """The inverse of ``pack``: bytes -> [rows, row_len] int8."""
    data = np.asarray(data, np.uint8)
    if bits == 8:
        return data.view(np.int8).reshape(rows, row_len).copy()
    pairs = data.reshape(rows, row_bytes(row_len, 4))
    low = (pairs & 0xF).astype(np.int8)
    high = (pairs >> 4).astype(np.int8)
    both = np.stack([low, high], axis=-1).reshape(rows, -1)[:, :row_len]
    return np.where(both > 7, both - 16, both).astype(np.int8)
