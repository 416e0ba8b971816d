"""The BinaryIndex file format (``.dhx``), version 1: see docs/index_format.md.

Layout, every integer little-endian::

    header   64 bytes   magic, version, byte-order mark, n_bits, id kind, row counts,
                        next default id, section count, CRC-32 of header + section table
    table    32 bytes per section: kind, offset, length, CRC-32 of the section's bytes
    sections codes (n_rows x code_bytes uint8), ids (n_rows x 8 bytes), removed-row
             bitmap (ceil(n_rows / 64) uint64 words), each at a 64-byte aligned offset

The layout is canonical: the header's counts determine every offset and length, so the
reader computes the expected table from the header (with Python integers, which cannot
overflow) and compares it, and the file's length, before it allocates or maps anything.
A truncated, foreign or bit-flipped file is a ValueError naming the path; the CRC-32 of the
header and table is always checked (and its reserved fields must be zero), those of the
sections and the zero padding between them on request (``verify``), because they read
every byte (opening a mapped file must not).

Checksums are CRC-32 (``zlib.crc32``, standard library): it detects every burst error up
to 32 bits and truncation or reordering with probability 1 - 2**-32, runs at memory speed,
and needs no dependency. It guards against damage, not tampering.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ._mih import ALIGN as _MIH_ALIGN
from ._mih import MAX_WIDTH as _MAX_TABLE_WIDTH
from ._mih import MihTables, removed_count

__all__ = [
    "FORMAT_VERSION",
    "ID_KINDS",
    "MAGIC",
    "IndexArrays",
    "read_index_file",
    "removed_mask",
    "strictly_increasing",
    "write_index_file",
]

MAGIC = b"\x89DHX\r\n\x1a\n"  # non-ASCII first byte and CR/LF/EOF catch text-mode damage
FORMAT_VERSION = 1
_BYTE_ORDER_MARK = 0x01020304
_HEADER = struct.Struct("<8sIIIIQQQIIII")  # 64 bytes
_SECTION = struct.Struct("<IIQQII")  # 32 bytes
_ALIGN = 64
_CODES, _IDS, _REMOVED, _MIH_PLAN, _MIH_OFFSETS, _MIH_ROWS = 1, 2, 3, 4, 5, 6
_SECTION_NAMES = {
    _CODES: "codes",
    _IDS: "ids",
    _REMOVED: "removed",
    _MIH_PLAN: "MIH plan",
    _MIH_OFFSETS: "MIH offsets",
    _MIH_ROWS: "MIH rows",
}
_PLAN_HEAD = struct.Struct("<QQ")  # n_indexed, number of tables; then begins, widths (u32)
ID_KINDS = ("int64", "uint64")  # the header's id kind is the position in this tuple
MAX_CODE_BYTES = 1 << 16
_CRC_CHUNK = 1 << 24
# Header flag: next_id is 2**64 (a uint64 index that holds the id 2**64 - 1), stored as 0.
_FLAG_IDS_EXHAUSTED = 1
_U64_LIMIT = 1 << 64

assert _HEADER.size == 64 and _SECTION.size == 32


@dataclass(frozen=True, eq=False)
class IndexArrays:
    """What an index file holds. ``removed`` is None when no row is removed; ``mih`` when
    the file carries no tables."""

    n_bits: int
    id_dtype: str
    codes: np.ndarray  # uint8 (n_rows, n_bits // 8)
    ids: np.ndarray  # int64 or uint64 (n_rows,)
    removed: np.ndarray | None  # uint64 (ceil(n_rows / 64),)
    n_removed: int
    next_id: int
    mih: MihTables | None = None


def _align(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _layout(
    n_rows: int, code_bytes: int, plan: tuple[int, list[int], bool] | None = None
) -> list[tuple[int, int, int]]:
    """(kind, offset, length) of every section, in file order; ``plan`` is the MIH tables'
    (n_indexed, widths, whether a bit order is stored) when the file has them."""
    n_sections = 3 if plan is None else 6
    offset = _align(_HEADER.size + n_sections * _SECTION.size)
    sizes = [(_CODES, n_rows * code_bytes), (_IDS, n_rows * 8), (_REMOVED, -(-n_rows // 64) * 8)]
    if plan is not None:
        n_indexed, widths, ordered = plan
        plan_bytes = _PLAN_HEAD.size + 8 * len(widths) + (32 * code_bytes if ordered else 0)
        sizes += [
            (_MIH_PLAN, plan_bytes),
            (_MIH_OFFSETS, 4 * sum((1 << w) + 1 for w in widths)),
            (_MIH_ROWS, 4 * len(widths) * n_indexed),
        ]
    layout = []
    for kind, length in sizes:
        layout.append((kind, offset, length))
        offset = _align(offset + length)
    return layout


def _file_length(layout: list[tuple[int, int, int]]) -> int:
    _, offset, length = layout[-1]
    return offset + length


def _crc(buffer: memoryview | bytes) -> int:
    crc = 0
    view = memoryview(buffer).cast("B")
    for start in range(0, len(view), _CRC_CHUNK):
        crc = zlib.crc32(view[start : start + _CRC_CHUNK], crc)
    return crc


def _bytes_of(array: np.ndarray) -> memoryview:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def _sections(arrays: IndexArrays) -> Iterator[memoryview]:
    little = "<u8" if arrays.id_dtype == "uint64" else "<i8"
    yield _bytes_of(arrays.codes)
    yield _bytes_of(arrays.ids.astype(little, copy=False))
    n_words = -(-len(arrays.ids) // 64)
    removed = arrays.removed if arrays.removed is not None else np.zeros(n_words, np.uint64)
    yield _bytes_of(removed.astype("<u8", copy=False))
    if arrays.mih is not None:
        mih = arrays.mih
        plan = _PLAN_HEAD.pack(mih.n_indexed, len(mih.widths))
        plan += bytes(_bytes_of(mih.begins.astype("<u4"))) + bytes(
            _bytes_of(mih.widths.astype("<u4"))
        )
        if mih.bit_order is not None:
            plan += bytes(_bytes_of(mih.bit_order.astype("<u4")))
        yield memoryview(plan)
        yield _bytes_of(mih.offsets.astype("<u4", copy=False))
        yield _bytes_of(mih.rows.astype("<u4", copy=False))


def _plan_of(mih: MihTables | None) -> tuple[int, list[int], bool] | None:
    if mih is None:
        return None
    return mih.n_indexed, [int(w) for w in mih.widths], mih.bit_order is not None


def write_index_file(handle: BinaryIO, arrays: IndexArrays) -> None:
    """Writes ``arrays`` to an open binary file (the caller makes the write atomic)."""
    n_rows, code_bytes = arrays.codes.shape
    layout = _layout(n_rows, code_bytes, _plan_of(arrays.mih))
    payloads = list(_sections(arrays))
    table = b"".join(
        _SECTION.pack(kind, 0, offset, length, _crc(payload), 0)
        for (kind, offset, length), payload in zip(layout, payloads)
    )
    header = _pack_header(arrays, n_rows, len(layout), crc=0)
    header = _pack_header(
        arrays, n_rows, len(layout), crc=zlib.crc32(table, zlib.crc32(header[:56]))
    )
    handle.write(header + table)
    position = len(header) + len(table)
    for (_, offset, _), payload in zip(layout, payloads):
        handle.write(b"\0" * (offset - position))
        handle.write(payload)
        position = offset + len(payload)


def _pack_header(arrays: IndexArrays, n_rows: int, n_sections: int, crc: int) -> bytes:
    exhausted = arrays.next_id == _U64_LIMIT
    return _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        _BYTE_ORDER_MARK,
        arrays.n_bits,
        ID_KINDS.index(arrays.id_dtype),
        n_rows,
        arrays.n_removed,
        0 if exhausted else arrays.next_id,
        n_sections,
        _FLAG_IDS_EXHAUSTED if exhausted else 0,
        crc,
        0,
    )


class _Reader:
    """Reads one file, turning every inconsistency into a ValueError naming it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{os.fspath(self.path)!r} is not a valid deephash index file: {what}")


def read_index_file(path: str | os.PathLike[str], *, mmap_mode: bool, verify: bool) -> IndexArrays:
    """The arrays of an index file, read into memory or mapped read-only (zero-copy).

    Raises
    ------
    ValueError
        If the file is not a complete, consistent version-1 index file (naming the path),
        or a section's checksum differs (``verify=True``).
    OSError
        If the file cannot be opened or read.
    """
    reader = _Reader(Path(path))
    with open(path, "rb") as handle:
        length = os.fstat(handle.fileno()).st_size
        fields = _check_header(reader, handle, length)
        n_bits, id_kind, n_rows, n_removed, next_id, layout, crcs, plan = fields
        code_bytes = n_bits // 8
        id_dtype = ID_KINDS[id_kind]
        if mmap_mode:
            if length == 0:  # pragma: no cover - the header check needs 64 bytes
                raise reader.fail("empty file")
            buffer: memoryview | mmap.mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            data = bytearray(length)
            handle.seek(0)
            if handle.readinto(data) != length:
                raise reader.fail("the file changed while it was read")
            buffer = memoryview(data)
    views = [memoryview(buffer)[offset : offset + size] for _, offset, size in layout]
    if verify:
        end = _HEADER.size + len(layout) * _SECTION.size
        for (kind, offset, size), view, expected in zip(layout, views, crcs):
            if any(memoryview(buffer)[end:offset]):
                raise reader.fail(
                    f"the padding before the {_SECTION_NAMES[kind]} section is not zero"
                )
            if _crc(view) != expected:
                raise reader.fail(f"the {_SECTION_NAMES[kind]} section fails its CRC-32 check")
            end = offset + size
    codes = np.frombuffer(views[0], dtype=np.uint8).reshape(n_rows, code_bytes)
    ids = np.frombuffer(views[1], dtype="<u8" if id_dtype == "uint64" else "<i8")
    removed = None
    if n_removed:
        removed = np.frombuffer(views[2], dtype="<u8")
        _check_removed(reader, removed, n_rows, n_removed)
    if verify:
        _check_ids(reader, ids, removed, id_dtype, next_id)
    mih = None
    if plan is not None:
        n_indexed, begins, widths, order = plan
        mih = MihTables(
            begins,
            widths,
            np.frombuffer(views[4], dtype="<u4").astype(np.uint32, copy=False),
            np.frombuffer(views[5], dtype="<u4").astype(np.uint32, copy=False),
            n_indexed,
            order,
        )
    return IndexArrays(
        n_bits=n_bits,
        id_dtype=id_dtype,
        codes=codes,
        ids=ids.astype(id_dtype, copy=False),
        removed=None if removed is None else removed.astype(np.uint64, copy=False),
        n_removed=n_removed,
        next_id=next_id,
        mih=mih,
    )


_Plan = tuple[int, np.ndarray, np.ndarray, np.ndarray | None]  # n_indexed, begins, widths, order


def _check_header(
    reader: _Reader, handle: BinaryIO, length: int
) -> tuple[int, int, int, int, int, list[tuple[int, int, int]], list[int], _Plan | None]:
    head = handle.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise reader.fail(f"{length} bytes, shorter than the {_HEADER.size}-byte header")
    (
        magic,
        version,
        mark,
        n_bits,
        id_kind,
        n_rows,
        n_removed,
        next_id,
        n_sections,
        flags,
        crc,
        reserved,
    ) = _HEADER.unpack_from(head)
    if magic != MAGIC:
        raise reader.fail(f"it starts with {head[:8]!r}, not the index magic {MAGIC!r}")
    if mark != _BYTE_ORDER_MARK:
        raise reader.fail(f"byte-order mark {mark:#010x}, expected {_BYTE_ORDER_MARK:#010x}")
    if version != FORMAT_VERSION:
        raise reader.fail(f"format version {version}; this library reads version {FORMAT_VERSION}")
    if n_sections not in (3, 6) or flags & ~_FLAG_IDS_EXHAUSTED or reserved:
        raise reader.fail(
            f"{n_sections} sections, flags {flags:#x}, reserved word {reserved:#x}: version 1 "
            f"has 3 or 6 sections, no flag but {_FLAG_IDS_EXHAUSTED} and a zero reserved word"
        )
    table = handle.read(n_sections * _SECTION.size)
    if len(table) < n_sections * _SECTION.size:
        raise reader.fail(f"{length} bytes, shorter than the header and section table")
    if zlib.crc32(table, zlib.crc32(head[:56])) != crc:
        raise reader.fail("the header or section table fails its CRC-32 check")
    if n_bits < 8 or n_bits % 8 or n_bits // 8 > MAX_CODE_BYTES:
        raise reader.fail(f"n_bits={n_bits} is not a multiple of 8 in [8, {8 * MAX_CODE_BYTES}]")
    if id_kind >= len(ID_KINDS):
        raise reader.fail(f"unknown id kind {id_kind}")
    if n_removed > n_rows:
        raise reader.fail(f"{n_removed} removed rows of {n_rows}")
    if flags & _FLAG_IDS_EXHAUSTED:
        if ID_KINDS[id_kind] != "uint64" or next_id != 0:
            raise reader.fail("the ids-exhausted flag is set on an int64 index or next_id != 0")
        next_id = _U64_LIMIT
    if ID_KINDS[id_kind] == "int64" and next_id > np.iinfo(np.int64).max + 1:
        raise reader.fail(f"next default id {next_id} is outside the int64 id range")
    plan = None
    if n_sections == 6:
        plan = _read_plan(reader, handle, length, table, n_rows, n_bits)
    layout = _layout(
        n_rows,
        n_bits // 8,
        None if plan is None else (plan[0], [int(w) for w in plan[2]], plan[3] is not None),
    )
    crcs = []
    for (kind, offset, size), raw in zip(layout, _SECTION.iter_unpack(table)):
        found_kind, reserved_a, found_offset, found_size, section_crc, reserved_b = raw
        if (found_kind, found_offset, found_size, reserved_a, reserved_b) != (
            kind,
            offset,
            size,
            0,
            0,
        ):
            raise reader.fail(
                f"section table entry ({found_kind}, {found_offset}, {found_size}) differs from "
                f"the layout of {n_rows} rows of {n_bits} bits ({kind}, {offset}, {size})"
            )
        crcs.append(section_crc)
    if length != _file_length(layout):
        raise reader.fail(
            f"{length} bytes where {n_rows} rows of {n_bits} bits take {_file_length(layout)} "
            "(truncated or extended)"
        )
    return n_bits, id_kind, n_rows, n_removed, next_id, layout, crcs, plan


def _read_plan(
    reader: _Reader, handle: BinaryIO, length: int, table: bytes, n_rows: int, n_bits: int
) -> _Plan:
    """The MIH plan section (its table entry bounded by the file, its CRC checked): every
    later section's size depends on it."""
    kind, _, offset, size, crc, _ = _SECTION.unpack_from(table, 3 * _SECTION.size)
    if kind != _MIH_PLAN or size < _PLAN_HEAD.size or size > _PLAN_HEAD.size + 12 * n_bits:
        raise reader.fail(f"MIH plan entry (kind {kind}, {size} bytes) is invalid")
    if offset + size > length:
        raise reader.fail(f"MIH plan ({size} bytes at {offset}) is past the end of the file")
    handle.seek(offset)
    data = handle.read(size)
    if len(data) != size or zlib.crc32(data) != crc:
        raise reader.fail("the MIH plan section fails its CRC-32 check")
    n_indexed, m = _PLAN_HEAD.unpack_from(data)
    ordered = size == _PLAN_HEAD.size + 8 * m + 4 * n_bits
    if not 1 <= m <= n_bits or not (ordered or size == _PLAN_HEAD.size + 8 * m):
        raise reader.fail(f"MIH plan of {m} tables does not match its {size} bytes")
    begins = np.frombuffer(data, "<u4", m, _PLAN_HEAD.size).astype(np.uint32)
    widths = np.frombuffer(data, "<u4", m, _PLAN_HEAD.size + 4 * m).astype(np.uint32)
    order = None
    if ordered:
        order = np.frombuffer(data, "<u4", n_bits, _PLAN_HEAD.size + 8 * m).astype(np.uint32)
    if (
        n_indexed > n_rows
        or n_indexed % _MIH_ALIGN
        or n_indexed >= 1 << 32
        or np.any(widths < 1)
        or np.any(widths > _MAX_TABLE_WIDTH)
        or np.any(begins.astype(np.int64) + widths > n_bits)
        or (order is not None and not np.array_equal(np.sort(order), np.arange(n_bits)))
    ):
        raise reader.fail(
            f"MIH plan of {m} tables over {n_indexed} rows (widths {widths.tolist()}) "
            f"does not fit {n_rows} rows of {n_bits} bits"
        )
    return n_indexed, begins, widths, order


def _check_removed(reader: _Reader, removed: np.ndarray, n_rows: int, n_removed: int) -> None:
    """The bitmap's bits past n_rows are clear and it marks exactly n_removed rows (cheap:
    n_rows / 8 bytes, read only when some row is removed)."""
    if n_rows % 64 and int(removed[-1]) >> (n_rows % 64):
        raise reader.fail("the removed-row bitmap marks rows past the end")
    marked = removed_count(removed)
    if marked != n_removed:
        raise reader.fail(f"the removed-row bitmap marks {marked} rows, the header {n_removed}")


def _check_ids(
    reader: _Reader, ids: np.ndarray, removed: np.ndarray | None, id_dtype: str, next_id: int
) -> None:
    """Live ids are unique, in the id kind's range and below the next default id."""
    live = ids if removed is None else ids[~removed_mask(removed, len(ids))]
    if len(live) == 0:
        return
    if id_dtype == "int64" and int(live.min()) < 0:
        raise reader.fail("a live id is negative")
    if int(live.max()) >= next_id:
        raise reader.fail(f"a live id ({int(live.max())}) is not below the next id {next_id}")
    if strictly_increasing(live):  # default ids: unique without a sort
        return
    ordered = np.sort(live)
    if np.any(ordered[1:] == ordered[:-1]):
        raise reader.fail("two live rows have the same id")


def strictly_increasing(ids: np.ndarray, chunk: int = 1 << 22) -> bool:
    """Whether ids are strictly increasing, read in chunks (so a mapped file's ids are
    never copied whole)."""
    for start in range(0, max(len(ids) - 1, 0), chunk):
        part = ids[start : start + chunk + 1]
        if not np.all(part[1:] > part[:-1]):
            return False
    return True


def removed_mask(removed: np.ndarray, n_rows: int) -> np.ndarray:
    """Boolean (n_rows,) mask of the removed rows of a bitmap (bit i % 64 of word i // 64)."""
    bits = np.unpackbits(removed.astype("<u8", copy=False).view(np.uint8), bitorder="little")
    return bits[:n_rows].astype(bool)
