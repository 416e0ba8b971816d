"""Building damaged model files by hand, for the model-file and fuzz tests.

An archive is handled as an ordered list of ``(member name, member bytes)``; members are
``.npy`` files (``npy_bytes``) or any bytes at all (a forged header, a pickled object).
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
import zlib

import numpy as np

META = "__meta__.npy"


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple, fortran: bool = False, version: int = 1) -> bytes:
    """A ``.npy`` header (magic, version, length, dict) declaring ``shape`` of ``descr``."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    size = 2 if version == 1 else 4
    pad = -(8 + size + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY" + bytes([version, 0]) + len(body).to_bytes(size, "little") + body


def read_members(path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_members(path, members, compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members:
            archive.writestr(name, data)


def meta_of(members) -> dict:
    data = dict(members)[META]
    return json.loads(np.load(io.BytesIO(data)).tobytes().decode("utf-8"))


def with_meta(members, meta) -> list[tuple[str, bytes]]:
    text = json.dumps(meta).encode("utf-8")
    return [
        (name, npy_bytes(np.frombuffer(text, np.uint8)) if name == META else data)
        for name, data in members
    ]


def replaced(members, name, data) -> list[tuple[str, bytes]]:
    return [(n, data if n == name else d) for n, d in members]


@functools.lru_cache(maxsize=8)
def deflated_zeros_member(header: bytes, n_bytes: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``header`` plus ``n_bytes`` zeros, and its CRC-32."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(header)]
    crc = zlib.crc32(header)
    left = n_bytes
    while left:
        piece = chunk[: min(left, len(chunk))]
        parts.append(compressor.compress(piece))
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    parts.append(compressor.flush())
    return b"".join(parts), crc


def write_with_bomb(path, members, name, header: bytes, n_bytes: int) -> None:
    """``members`` with member ``name`` replaced by a deflated ``.npy`` of ``n_bytes`` zeros
    after ``header`` (a small file that inflates to ``n_bytes``)."""
    stream, crc = deflated_zeros_member(header, n_bytes)
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members:
            if member != name:
                archive.writestr(member, data)
                continue
            info = zipfile.ZipInfo(member)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Write the stream as it is: zipfile would recompress; patch sizes by hand.
            info.file_size, info.compress_size, info.CRC = len(header) + n_bytes, len(stream), crc
            info.header_offset = archive.fp.tell()
            archive.fp.write(info.FileHeader(zip64=False))
            archive.fp.write(stream)
            archive.filelist.append(info)
            archive.NameToInfo[member] = info
            archive.start_dir = archive.fp.tell()


def central_entries(data: bytes) -> list[int]:
    """Offsets of the central directory entries of a zip file's bytes."""
    offsets, at = [], data.find(b"PK\x01\x02")
    while at != -1:
        offsets.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    return offsets
