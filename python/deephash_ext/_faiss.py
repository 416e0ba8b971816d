"""Interop with faiss binary indexes: their files, read without faiss, and live objects.

Our codes already use faiss's bit layout (a code of ``d`` bits is ``d / 8`` uint8 bytes,
exactly a row of faiss's ``xb``) and our ids are int64 like faiss's ``idx_t``, so nothing
is converted: rows and ids are copied as they are.

The file format
---------------
What ``faiss.write_index_binary`` writes is the index's fields in declaration order, as raw
little-endian memory (faiss writes native byte order; every platform it ships for is
little-endian), with no padding, no checksum and no version number. Each index starts with
a four-byte type tag (a "fourcc", stored as its ASCII characters) followed by the fields
every binary index has, 21 bytes:

====== ====== ==============================================================
bytes  type   field
====== ====== ==============================================================
4      int32  ``d``: bits per code (a positive multiple of 8)
4      int32  ``code_size``: bytes per code, ``d / 8``
8      int64  ``ntotal``: number of codes
1      bool   ``is_trained``: always 1 for the types read here
4      int32  ``metric_type``: faiss's MetricType; binary indexes always measure the
              Hamming distance whatever it says, and faiss builds every one of them
              with METRIC_L2 (1), the only value accepted here
====== ====== ==============================================================

A variable-length array ("vector") is an uint64 element count followed by the elements.
The three index types read here add, after the common fields:

- ``IBxF`` (IndexBinaryFlat): the codes, a vector of ``ntotal * code_size`` bytes, row
  after row.
- ``IBMp`` (IndexBinaryIDMap) and ``IBM2`` (IndexBinaryIDMap2, which keeps a reverse map
  from id to row in memory only; its file is the same): the wrapped index, written
  recursively from its own fourcc on (only an ``IBxF`` one is accepted here), then the
  ids, a vector of ``ntotal`` int64, the id of each row of the wrapped index in order.

Checks
------
:func:`read_faiss_binary_file` checks every count against the bytes left in the file
before anything is allocated for it, and checks the file is exactly consumed (no
trailing bytes). ``d`` must be a positive multiple of 8 and ``code_size`` equal to
``d / 8``; ``ntotal`` must be non-negative; the codes vector must hold exactly ``ntotal``
rows and the ids vector exactly ``ntotal`` ids; an IDMap and the flat index it wraps must
agree on ``d``, ``code_size`` and ``ntotal``; ``is_trained`` must be 1 and ``metric_type``
1. Anything else (truncated, corrupt, inconsistent, foreign) is a ValueError naming the
path; so is a faiss index type not handled here (HNSW, IVF, hash, from-float, an IDMap
over anything but a flat index), whose message names the fourcc found. Id values are not
checked: faiss itself writes whatever ids it was given, duplicates included.
"""

from __future__ import annotations

import io
import math
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._optional import require
from ._validation import check_codes, check_int

__all__ = [
    "FAISS_BINARY_TAGS",
    "FaissBinaryData",
    "from_faiss_object",
    "is_faiss_binary_file",
    "read_faiss_binary_file",
    "to_faiss_object",
]

_FLAT = b"IBxF"
_IDMAP = b"IBMp"
_IDMAP2 = b"IBM2"
FAISS_BINARY_TAGS: tuple[bytes, ...] = (_FLAT, _IDMAP, _IDMAP2)

_HEADER = struct.Struct("<iiqBi")  # d, code_size, ntotal, is_trained, metric_type
_COUNT = struct.Struct("<Q")  # the element count in front of a vector
_METRIC_L2 = 1  # the metric_type faiss gives every binary index
_SUPPORTED = (
    "only IndexBinaryFlat, IndexBinaryIDMap and IndexBinaryIDMap2 over a flat index are supported"
)


@dataclass(frozen=True, eq=False)
class FaissBinaryData:
    """The content of a faiss binary flat index, with its ids when it had an IDMap.

    Attributes
    ----------
    n_bits : int
        Bits per code (faiss's ``d``), a positive multiple of 8.
    codes : numpy.ndarray
        uint8, shape ``(n, n_bits // 8)``, C-contiguous, owning its memory.
    ids : numpy.ndarray or None
        int64, shape ``(n,)``, for an IndexBinaryIDMap or IndexBinaryIDMap2; None for a
        bare IndexBinaryFlat.
    """

    n_bits: int
    codes: np.ndarray
    ids: np.ndarray | None


class _Bad(Exception):
    """A reason the bytes are not a file we read; turned into a ValueError naming it."""


class _Unsupported(Exception):
    """A faiss index type we do not read; turned into a ValueError naming it."""


def _show_tag(tag: bytes) -> str:
    """A fourcc for a message: its characters when printable, else its bytes."""
    if len(tag) == 4 and all(0x20 < byte < 0x7F for byte in tag):
        return repr(tag.decode("ascii"))
    return repr(tag)


def _is_faiss_tag(tag: bytes) -> bool:
    """Whether ``tag`` looks like a faiss index fourcc ("I" and three printable chars)."""
    return len(tag) == 4 and tag[:1] == b"I" and all(0x20 < byte < 0x7F for byte in tag)


class _Reader:
    """Sequential reads from a stream of known length, each checked against what is left."""

    def __init__(self, stream: io.BufferedIOBase, length: int) -> None:
        self._stream = stream
        self._length = length
        self.offset = 0

    @property
    def left(self) -> int:
        return self._length - self.offset

    def _need(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise _Bad(
                f"truncated: {what} needs {nbytes} bytes at offset {self.offset}, "
                f"only {max(self.left, 0)} left"
            )

    def take(self, nbytes: int, what: str) -> bytes:
        """Exactly ``nbytes`` bytes."""
        self._need(nbytes, what)
        data = self._stream.read(nbytes)
        if len(data) != nbytes:  # the file shrank while being read
            raise _Bad(f"truncated: {what} at offset {self.offset} ends early")
        self.offset += nbytes
        return data

    def array(self, shape: tuple[int, ...], dtype: str, what: str) -> np.ndarray:
        """A fresh C-contiguous array of ``shape`` filled from the stream. The byte count
        is checked against what is left before the array is allocated."""
        nbytes = np.dtype(dtype).itemsize * math.prod(shape)
        self._need(nbytes, what)
        out = np.empty(shape, dtype=dtype)
        if nbytes:
            view = out.data.cast("B")
            filled = 0
            while filled < nbytes:
                got = self._stream.readinto(view[filled:])
                if not got:
                    raise _Bad(f"truncated: {what} at offset {self.offset + filled} ends early")
                filled += got
        self.offset += nbytes
        return out

    def at_end(self) -> bool:
        return self.left == 0 and not self._stream.read(1)


def _read_header(reader: _Reader) -> tuple[int, int, int]:
    """The common fields after a fourcc, checked; returns (d, code_size, ntotal)."""
    at = reader.offset
    d, code_size, ntotal, is_trained, metric = _HEADER.unpack(
        reader.take(_HEADER.size, "the index header")
    )
    if d <= 0 or d % 8:
        raise _Bad(f"d = {d} at offset {at} is not a positive multiple of 8")
    if code_size != d // 8:
        raise _Bad(f"code_size = {code_size} at offset {at + 4} is not d / 8 = {d // 8}")
    if ntotal < 0:
        raise _Bad(f"ntotal = {ntotal} at offset {at + 8} is negative")
    if is_trained != 1:
        raise _Bad(f"is_trained = {is_trained} at offset {at + 16} is not 1 (true)")
    if metric != _METRIC_L2:
        raise _Bad(
            f"metric_type = {metric} at offset {at + 17} is not the {_METRIC_L2} "
            "faiss stores for every binary index"
        )
    return d, code_size, ntotal


def _read_count(reader: _Reader, expected: int, itemsize: int, what: str) -> None:
    """A vector's element count: must equal ``expected`` and fit in what is left."""
    at = reader.offset
    (count,) = _COUNT.unpack(reader.take(_COUNT.size, f"the length of {what}"))
    if count != expected:
        raise _Bad(f"{what} at offset {at} holds {count} elements, expected {expected}")
    if count * itemsize > reader.left:
        raise _Bad(
            f"truncated: {what} at offset {at} needs {count * itemsize} bytes, "
            f"only {reader.left} left"
        )


def _read_flat(reader: _Reader) -> tuple[int, int, np.ndarray]:
    """An IndexBinaryFlat after its fourcc; returns (d, ntotal, codes)."""
    d, code_size, ntotal = _read_header(reader)
    _read_count(reader, ntotal * code_size, 1, "the codes")
    codes = reader.array((ntotal, code_size), "u1", "the codes")
    return d, ntotal, codes


def _parse(reader: _Reader) -> FaissBinaryData:
    tag = reader.take(4, "the fourcc")
    if tag == _FLAT:
        d, _, codes = _read_flat(reader)
        ids = None
    elif tag in (_IDMAP, _IDMAP2):
        d, _, ntotal = _read_header(reader)
        sub_at = reader.offset
        sub_tag = reader.take(4, "the fourcc of the wrapped index")
        if sub_tag != _FLAT:
            if _is_faiss_tag(sub_tag):
                raise _Unsupported(
                    f"a faiss {_show_tag(tag)} index over a {_show_tag(sub_tag)} sub-index"
                )
            raise _Bad(f"the wrapped index at offset {sub_at} has no faiss fourcc")
        sub_d, sub_ntotal, codes = _read_flat(reader)
        if (sub_d, sub_ntotal) != (d, ntotal):
            raise _Bad(
                f"the IDMap (d = {d}, ntotal = {ntotal}) and its flat index "
                f"(d = {sub_d}, ntotal = {sub_ntotal}) disagree"
            )
        _read_count(reader, ntotal, 8, "the ids")
        ids = reader.array((ntotal,), "<i8", "the ids").astype(np.int64, copy=False)
    elif _is_faiss_tag(tag):
        raise _Unsupported(f"a faiss {_show_tag(tag)} index")
    else:
        raise _Bad(f"it does not start with a faiss fourcc (found {tag!r})")
    if not reader.at_end():
        raise _Bad(f"{max(reader.left, 1)} unexpected trailing bytes at offset {reader.offset}")
    return FaissBinaryData(n_bits=d, codes=codes, ids=ids)


def _parse_stream(stream: io.BufferedIOBase, length: int, where: str) -> FaissBinaryData:
    try:
        return _parse(_Reader(stream, length))
    except _Unsupported as error:
        raise ValueError(f"{where!r} holds {error}; {_SUPPORTED}") from None
    except _Bad as error:
        raise ValueError(f"{where!r} is not a readable faiss binary index file: {error}") from None


def _parse_faiss_binary(data: bytes, where: str) -> FaissBinaryData:
    """Parse the bytes of a faiss binary index file; ``where`` names it in errors."""
    return _parse_stream(io.BytesIO(data), len(data), where)


def is_faiss_binary_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a readable file starting with one of :data:`FAISS_BINARY_TAGS`.

    Reads the first four bytes only; never raises for a missing or unreadable path.
    """
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in FAISS_BINARY_TAGS
    except OSError:
        return False


def read_faiss_binary_file(path: str | os.PathLike[str]) -> FaissBinaryData:
    """Read a file written by ``faiss.write_index_binary``, without faiss.

    Reads IndexBinaryFlat, IndexBinaryIDMap and IndexBinaryIDMap2 (over an
    IndexBinaryFlat) files; see the module docstring for the format and the checks.

    Raises
    ------
    OSError
        If the file cannot be opened (FileNotFoundError when it does not exist).
    ValueError
        If the file is truncated, corrupt, inconsistent, foreign, or holds a faiss index
        of another type (then the message names its fourcc); the message names the path.
    """
    where = os.fspath(path)
    with open(where, "rb") as handle:
        length = os.fstat(handle.fileno()).st_size
        return _parse_stream(handle, length, str(where))


def _type_name(value: object) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def from_faiss_object(index: Any) -> FaissBinaryData:
    """Copy the codes (and ids) out of a live faiss IndexBinaryFlat, IndexBinaryIDMap or
    IndexBinaryIDMap2 over an IndexBinaryFlat.

    The result owns copies: later changes to ``index`` do not affect it.

    Raises
    ------
    ImportError
        If faiss is not installed.
    TypeError
        If ``index`` is not one of those faiss types (the message names its type).
    ValueError
        If the object is internally inconsistent (e.g. the wrapped index was added to
        directly, so that its size no longer matches the ids) or its metric_type is not
        the METRIC_L2 faiss gives every binary index.
    """
    faiss: Any = require("faiss", "faiss interop", "faiss")
    if not isinstance(index, faiss.IndexBinary):
        raise TypeError(
            "expected a faiss IndexBinaryFlat, IndexBinaryIDMap or IndexBinaryIDMap2, "
            f"got {_type_name(index)}"
        )
    # A new wrapper that does not own the C++ object: ``index``, which may be the only
    # owner (a temporary such as faiss.read_index_binary(...)), stays bound until we return.
    top: Any = faiss.downcast_IndexBinary(index)
    ids: np.ndarray | None = None
    if isinstance(top, faiss.IndexBinaryIDMap):  # IndexBinaryIDMap2 included
        sub: Any = top.index
        sub = None if sub is None else faiss.downcast_IndexBinary(sub)
        if type(sub) is not faiss.IndexBinaryFlat:
            raise TypeError(
                f"expected a faiss {type(top).__name__} over an IndexBinaryFlat, got one "
                f"over {_type_name(sub)}; {_SUPPORTED}"
            )
        ids = np.ascontiguousarray(faiss.vector_to_array(top.id_map), dtype=np.int64)
        if not (top.ntotal == sub.ntotal == ids.shape[0]) or top.d != sub.d:
            raise ValueError(
                f"inconsistent faiss {type(top).__name__}: ntotal {top.ntotal}, "
                f"{ids.shape[0]} ids, wrapped index with ntotal {sub.ntotal} and d {sub.d} "
                f"(d {top.d})"
            )
        flat = sub
    elif type(top) is faiss.IndexBinaryFlat:
        flat = top
    else:
        raise TypeError(
            "expected a faiss IndexBinaryFlat, IndexBinaryIDMap or IndexBinaryIDMap2, "
            f"got {type(top).__name__}; {_SUPPORTED}"
        )
    for part in (top, flat):
        if part.metric_type != _METRIC_L2:
            raise ValueError(
                f"faiss {type(part).__name__} has metric_type {part.metric_type}, not the "
                f"{_METRIC_L2} faiss gives every binary index"
            )
    n_bits, code_size, ntotal = int(flat.d), int(flat.code_size), int(flat.ntotal)
    nbytes = int(flat.xb.size())
    if n_bits <= 0 or n_bits % 8 or code_size != n_bits // 8 or nbytes != ntotal * code_size:
        raise ValueError(
            f"inconsistent faiss IndexBinaryFlat: d {n_bits}, code_size {code_size}, "
            f"ntotal {ntotal}, {nbytes} code bytes"
        )
    codes = np.empty((ntotal, code_size), dtype=np.uint8)
    if nbytes:
        codes.reshape(-1)[:] = faiss.rev_swig_ptr(flat.xb.data(), nbytes)
    return FaissBinaryData(n_bits=n_bits, codes=codes, ids=ids)


def to_faiss_object(n_bits: int, codes: np.ndarray, ids: np.ndarray | None) -> Any:
    """A new faiss index holding copies of ``codes`` (and ``ids``).

    ``ids`` None gives an ``IndexBinaryFlat(n_bits)``; otherwise an ``IndexBinaryIDMap2``
    over an ``IndexBinaryFlat(n_bits)`` (which owns the flat index, as one read by
    ``faiss.read_index_binary`` does), with row ``i`` under id ``ids[i]``.

    Raises
    ------
    ImportError
        If faiss is not installed.
    TypeError
        If ``codes`` is not uint8 or ``ids`` is not int64.
    ValueError
        If ``n_bits`` is not a positive multiple of 8, ``codes`` is not
        ``(n, n_bits // 8)`` or ``ids`` is not ``(n,)``.
    """
    n_bits = check_int(n_bits, "n_bits", minimum=8)
    if n_bits % 8:
        raise ValueError(f"n_bits must be a multiple of 8, got {n_bits}")
    rows = np.ascontiguousarray(check_codes(codes))
    if rows.shape[1] != n_bits // 8:
        raise ValueError(f"codes must have shape (n, {n_bits // 8}), got {rows.shape}")
    labels: np.ndarray | None = None
    if ids is not None:
        labels = np.asarray(ids)
        if labels.dtype != np.int64:
            raise TypeError(f"ids must be int64, got dtype {labels.dtype}")
        if labels.shape != (rows.shape[0],):
            raise ValueError(f"ids must have shape ({rows.shape[0]},), got {labels.shape}")
        labels = np.ascontiguousarray(labels)
    faiss: Any = require("faiss", "faiss interop", "faiss")
    flat = faiss.IndexBinaryFlat(n_bits)
    if labels is None:
        flat.add(rows)
        return flat
    index = faiss.IndexBinaryIDMap2(flat)
    # The IDMap deletes the flat index with itself; Python must no longer delete it.
    flat.this.disown()
    index.own_fields = True
    index.add_with_ids(rows, labels)
    return index
