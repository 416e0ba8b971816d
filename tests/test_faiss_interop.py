"""faiss interop: reading faiss binary index files without faiss, and live faiss objects.

The tests that need faiss skip without it (through ``_faiss``); the hand-crafted and
fuzzed files are built here from the format described in ``deephash_ext._faiss`` and run
without faiss. ``test_crafted_bytes_match_faiss`` pins that description to what faiss
really writes.
"""

from __future__ import annotations

import gc
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from deephash_ext._faiss import (
    FAISS_BINARY_TAGS,
    FaissBinaryData,
    _parse_faiss_binary,
    from_faiss_object,
    is_faiss_binary_file,
    read_faiss_binary_file,
    to_faiss_object,
)

FLAT, IDMAP, IDMAP2 = b"IBxF", b"IBMp", b"IBM2"
KINDS = {"flat": FLAT, "idmap": IDMAP, "idmap2": IDMAP2}
HEADER = struct.Struct("<iiqBi")  # d, code_size, ntotal, is_trained, metric_type
SUPPORTED = "only IndexBinaryFlat, IndexBinaryIDMap and IndexBinaryIDMap2 over a flat index"


def _faiss() -> Any:
    """faiss, or skip the calling test when it is not installed."""
    return pytest.importorskip("faiss")


def random_data(
    rng: np.random.Generator, n_bits: int, n: int, with_ids: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    codes = rng.integers(0, 256, size=(n, n_bits // 8), dtype=np.uint8)
    if not with_ids:
        return codes, None
    # distinct ids, negative and huge ones included
    ids = rng.choice(np.arange(-(10**6), 10**6), size=n, replace=False).astype(np.int64)
    if n >= 2:
        ids[0], ids[-1] = np.iinfo(np.int64).max, np.iinfo(np.int64).min + 1
    return codes, ids


def header(n_bits: int, n: int, *, code_size: int | None = None, trained=1, metric=1) -> bytes:
    return HEADER.pack(n_bits, n_bits // 8 if code_size is None else code_size, n, trained, metric)


def flat_bytes(n_bits: int, codes: np.ndarray, *, count: int | None = None, **fields) -> bytes:
    n, width = codes.shape[0], n_bits // 8
    size = n * width if count is None else count
    return FLAT + header(n_bits, n, **fields) + struct.pack("<Q", size) + codes.tobytes()


def craft(tag: bytes, n_bits: int, codes: np.ndarray, ids: np.ndarray | None) -> bytes:
    """The bytes faiss.write_index_binary writes for such an index (see the module doc)."""
    flat = flat_bytes(n_bits, codes)
    if tag == FLAT:
        return flat
    assert ids is not None
    n = codes.shape[0]
    return tag + header(n_bits, n) + flat + struct.pack("<Q", n) + ids.astype("<i8").tobytes()


def faiss_index(faiss: Any, kind: str, n_bits: int, codes: np.ndarray, ids: np.ndarray | None):
    flat = faiss.IndexBinaryFlat(n_bits)
    if kind == "flat":
        flat.add(codes)
        return flat
    index = (faiss.IndexBinaryIDMap if kind == "idmap" else faiss.IndexBinaryIDMap2)(flat)
    index.add_with_ids(codes, ids)
    return index


def check_data(
    data: FaissBinaryData, n_bits: int, codes: np.ndarray, ids: np.ndarray | None
) -> None:
    assert data.n_bits == n_bits
    check_shapes(data)
    np.testing.assert_array_equal(data.codes, codes)
    assert data.codes.shape == codes.shape
    if ids is None:
        assert data.ids is None
    else:
        assert data.ids is not None
        np.testing.assert_array_equal(data.ids, ids)


def check_shapes(data: FaissBinaryData) -> None:
    """The contract every successful read meets."""
    assert isinstance(data.n_bits, int) and data.n_bits > 0 and data.n_bits % 8 == 0
    codes = data.codes
    assert codes.dtype == np.uint8 and codes.ndim == 2
    assert codes.shape[1] == data.n_bits // 8
    assert codes.flags.c_contiguous and codes.flags.owndata and codes.flags.writeable
    if data.ids is not None:
        assert data.ids.dtype == np.int64 and data.ids.shape == (codes.shape[0],)
        assert data.ids.flags.c_contiguous and data.ids.flags.owndata


# --------------------------------------------------------------------------- files by faiss


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, 37])
@pytest.mark.parametrize("n_bits", [8, 64, 72, 256, 1024])
def test_reads_files_written_by_faiss(tmp_path: Path, kind: str, n_bits: int, n: int) -> None:
    faiss = _faiss()
    codes, ids = random_data(np.random.default_rng(n_bits * 100 + n), n_bits, n, kind != "flat")
    path = tmp_path / f"{kind}.faiss"
    faiss.write_index_binary(faiss_index(faiss, kind, n_bits, codes, ids), str(path))
    assert is_faiss_binary_file(path)
    check_data(read_faiss_binary_file(path), n_bits, codes, ids)
    check_data(read_faiss_binary_file(str(path)), n_bits, codes, ids)


@pytest.mark.parametrize("kind", KINDS)
def test_crafted_bytes_match_faiss(tmp_path: Path, kind: str) -> None:
    faiss = _faiss()
    rng = np.random.default_rng(7)
    for n_bits, n in [(8, 0), (64, 3), (200, 11)]:
        codes, ids = random_data(rng, n_bits, n, kind != "flat")
        path = tmp_path / "index.faiss"
        faiss.write_index_binary(faiss_index(faiss, kind, n_bits, codes, ids), str(path))
        assert path.read_bytes() == craft(KINDS[kind], n_bits, codes, ids)


@pytest.mark.parametrize("kind", KINDS)
def test_reads_crafted_files(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(8)
    for n_bits, n in [(8, 0), (8, 1), (64, 5), (1024, 37)]:
        codes, ids = random_data(rng, n_bits, n, kind != "flat")
        data = craft(KINDS[kind], n_bits, codes, ids)
        check_data(_parse_faiss_binary(data, "x"), n_bits, codes, ids)
        path = tmp_path / "crafted.faiss"
        path.write_bytes(data)
        check_data(read_faiss_binary_file(path), n_bits, codes, ids)


def test_read_result_owns_its_memory(tmp_path: Path) -> None:
    codes, ids = random_data(np.random.default_rng(9), 64, 6, True)
    path = tmp_path / "index.faiss"
    path.write_bytes(craft(IDMAP2, 64, codes, ids))
    data = read_faiss_binary_file(path)
    path.write_bytes(craft(IDMAP2, 64, codes ^ 0xFF, ids + 1))
    check_data(data, 64, codes, ids)
    with pytest.raises(AttributeError):
        data.n_bits = 8  # type: ignore[misc]


# --------------------------------------------------------------------------- live objects


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, 37])
@pytest.mark.parametrize("n_bits", [8, 72, 256])
def test_object_round_trip(kind: str, n_bits: int, n: int) -> None:
    faiss = _faiss()
    rng = np.random.default_rng(n_bits + n)
    codes, ids = random_data(rng, n_bits, n, kind != "flat")
    original = faiss_index(faiss, kind, n_bits, codes, ids)
    data = from_faiss_object(original)
    check_data(data, n_bits, codes, ids)

    rebuilt = to_faiss_object(data.n_bits, data.codes, data.ids)
    expected_type = faiss.IndexBinaryFlat if ids is None else faiss.IndexBinaryIDMap2
    assert type(rebuilt) is expected_type
    assert rebuilt.ntotal == n and rebuilt.d == n_bits
    check_data(from_faiss_object(rebuilt), n_bits, codes, ids)

    queries = rng.integers(0, 256, size=(9, n_bits // 8), dtype=np.uint8)
    queries[0] = codes[0] if n else 0
    k = max(1, min(n, 5))
    want_d, want_i = original.search(queries, k)
    got_d, got_i = rebuilt.search(queries, k)
    np.testing.assert_array_equal(got_d, want_d)
    np.testing.assert_array_equal(got_i, want_i)  # same rows in the same order: same ties

    # later changes to either side do not leak into the other
    original.reset()
    data.codes[:] ^= 0xFF
    check_data(from_faiss_object(rebuilt), n_bits, codes, ids)


def test_from_object_of_a_temporary() -> None:
    """The object may be the only owner of the faiss index (not kept by the caller)."""
    faiss = _faiss()
    codes, ids = random_data(np.random.default_rng(10), 64, 20, True)
    for _ in range(3):
        data = from_faiss_object(faiss_index(faiss, "idmap2", 64, codes, ids))
        gc.collect()
        check_data(data, 64, codes, ids)


def test_to_object_keeps_its_flat_index_alive(tmp_path: Path) -> None:
    faiss = _faiss()
    codes, ids = random_data(np.random.default_rng(11), 128, 50, True)
    made = [to_faiss_object(128, codes, ids) for _ in range(4)]
    for index in made:
        index.referenced_objects = []  # what Python held besides the IDMap itself
    gc.collect()
    for index in made:
        distances, labels = index.search(codes[:3], 1)
        np.testing.assert_array_equal(distances[:, 0], 0)
        np.testing.assert_array_equal(labels[:, 0], ids[:3])
        assert faiss.downcast_IndexBinary(index.index).ntotal == 50
    path = tmp_path / "made.faiss"
    faiss.write_index_binary(made[0], str(path))
    check_data(read_faiss_binary_file(path), 128, codes, ids)
    del made, index
    gc.collect()
    loaded = faiss.read_index_binary(str(path))
    check_data(from_faiss_object(loaded), 128, codes, ids)


def test_to_object_copies_its_input() -> None:
    _faiss()
    codes, ids = random_data(np.random.default_rng(12), 64, 8, True)
    index = to_faiss_object(64, codes, ids)
    flat = to_faiss_object(64, codes, None)
    keep_codes, keep_ids = codes.copy(), ids.copy()
    codes[:] = 0
    ids[:] = 0
    check_data(from_faiss_object(index), 64, keep_codes, keep_ids)
    check_data(from_faiss_object(flat), 64, keep_codes, None)


def test_to_object_accepts_non_contiguous_rows() -> None:
    _faiss()
    codes, ids = random_data(np.random.default_rng(13), 64, 10, True)
    wide = np.zeros((10, 16), dtype=np.uint8)
    wide[:, ::2] = codes
    index = to_faiss_object(64, wide[:, ::2], ids[::-1].copy()[::-1])
    check_data(from_faiss_object(index), 64, codes, ids)


@pytest.mark.parametrize(
    "args, error",
    [
        ((12, np.zeros((2, 2), np.uint8), None), ValueError),
        ((0, np.zeros((2, 0), np.uint8), None), ValueError),
        ((16.0, np.zeros((2, 2), np.uint8), None), TypeError),
        ((16, np.zeros((2, 3), np.uint8), None), ValueError),
        ((16, np.zeros(2, np.uint8), None), ValueError),
        ((16, np.zeros((2, 2), np.int8), None), TypeError),
        ((16, np.zeros((2, 2), np.uint8), np.zeros(2, np.int32)), TypeError),
        ((16, np.zeros((2, 2), np.uint8), np.zeros(3, np.int64)), ValueError),
        ((16, np.zeros((2, 2), np.uint8), np.zeros((2, 1), np.int64)), ValueError),
    ],
)
def test_to_object_rejects_bad_arguments(args: tuple, error: type[Exception]) -> None:
    _faiss()
    with pytest.raises(error):
        to_faiss_object(*args)


def test_from_object_rejects_other_types() -> None:
    faiss = _faiss()
    codes = np.random.default_rng(14).integers(0, 256, size=(64, 8), dtype=np.uint8)
    hnsw = faiss.IndexBinaryHNSW(64)
    hnsw.add(codes)
    ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(64), 64, 1)
    ivf.train(codes)
    idmap_hnsw = faiss.IndexBinaryIDMap(faiss.IndexBinaryHNSW(64))
    idmap_hash = faiss.IndexBinaryIDMap2(faiss.IndexBinaryHash(64, 8))
    cases = [
        (None, "NoneType"),
        (codes, "ndarray"),
        ("index.faiss", "str"),
        (FaissBinaryData(64, codes, None), "FaissBinaryData"),
        (faiss.IndexFlatL2(8), "IndexFlatL2"),
        (hnsw, "IndexBinaryHNSW"),
        (ivf, "IndexBinaryIVF"),
        (faiss.IndexBinaryHash(64, 8), "IndexBinaryHash"),
        (idmap_hnsw, "IndexBinaryHNSW"),
        (idmap_hash, "IndexBinaryHash"),
    ]
    for value, name in cases:
        with pytest.raises(TypeError, match=name):
            from_faiss_object(value)


def test_from_object_rejects_inconsistent_objects() -> None:
    faiss = _faiss()
    codes, ids = random_data(np.random.default_rng(15), 64, 4, True)
    index = faiss_index(faiss, "idmap", 64, codes, ids)
    faiss.downcast_IndexBinary(index.index).add(codes)  # rows without ids
    with pytest.raises(ValueError, match="inconsistent"):
        from_faiss_object(index)
    flat = faiss_index(faiss, "flat", 64, codes, None)
    flat.metric_type = faiss.METRIC_INNER_PRODUCT
    with pytest.raises(ValueError, match="metric_type"):
        from_faiss_object(flat)


# --------------------------------------------------------------------------- other files


def unsupported_indexes(faiss: Any) -> Iterator[tuple[str, Any, bool]]:
    """(fourcc in the message, index, written with write_index_binary)."""
    codes = np.random.default_rng(16).integers(0, 256, size=(64, 8), dtype=np.uint8)
    hnsw = faiss.IndexBinaryHNSW(64)
    hnsw.add(codes)
    yield "'IBHf'", hnsw, True
    ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(64), 64, 1)
    ivf.train(codes)
    ivf.add(codes)
    yield "'IBwF'", ivf, True
    hashed = faiss.IndexBinaryHash(64, 8)
    hashed.add(codes)
    yield "'IBHh'", hashed, True
    multi = faiss.IndexBinaryMultiHash(64, 2, 8)
    multi.add(codes)
    yield "'IBHm'", multi, True
    yield "'IBFf'", faiss.IndexBinaryFromFloat(faiss.IndexFlatL2(64)), True
    idmap = faiss.IndexBinaryIDMap(faiss.IndexBinaryHNSW(64))
    idmap.add_with_ids(codes, np.arange(64, dtype=np.int64))
    yield "'IBMp' index over a 'IBHf' sub-index", idmap, True
    yield "'IxF2'", faiss.IndexFlatL2(8), False


def test_unsupported_faiss_files(tmp_path: Path) -> None:
    faiss = _faiss()
    for i, (found, index, binary) in enumerate(unsupported_indexes(faiss)):
        path = tmp_path / f"other{i}.faiss"
        (faiss.write_index_binary if binary else faiss.write_index)(index, str(path))
        assert not is_faiss_binary_file(path) or found.startswith("'IBMp'")
        with pytest.raises(ValueError, match=SUPPORTED) as caught:
            read_faiss_binary_file(path)
        message = str(caught.value)
        assert repr(str(path)) in message and f"holds a faiss {found}" in message


def test_is_faiss_binary_file(tmp_path: Path) -> None:
    codes, ids = random_data(np.random.default_rng(17), 64, 3, True)
    for tag in FAISS_BINARY_TAGS:
        path = tmp_path / f"{tag.decode()}.faiss"
        path.write_bytes(craft(tag, 64, codes, ids))
        assert is_faiss_binary_file(path) and is_faiss_binary_file(str(path))
    others = {
        "empty": b"",
        "short": b"IBx",
        "npz": b"PK\x03\x04" + bytes(40),
        "text": b"hello world\n",
        "hnsw": b"IBHf" + bytes(40),
        "float": b"IxF2" + bytes(40),
    }
    for name, data in others.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert not is_faiss_binary_file(path), name
    assert not is_faiss_binary_file(tmp_path / "missing")
    assert not is_faiss_binary_file(tmp_path)


def test_is_faiss_binary_file_on_faiss_files(tmp_path: Path) -> None:
    faiss = _faiss()
    codes, ids = random_data(np.random.default_rng(18), 64, 3, True)
    for kind in KINDS:
        path = tmp_path / f"{kind}.faiss"
        faiss.write_index_binary(faiss_index(faiss, kind, 64, codes, ids), str(path))
        assert is_faiss_binary_file(path)


def test_open_errors_propagate(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_faiss_binary_file(tmp_path / "missing.faiss")
    with pytest.raises(OSError):
        read_faiss_binary_file(tmp_path)


# --------------------------------------------------------------------------- hand-crafted errors

_C = np.arange(10, dtype=np.uint8).reshape(5, 2)  # 5 codes of 16 bits
_IDS = np.arange(5, dtype=np.int64)
_GOOD_FLAT = flat_bytes(16, _C)
_IDS_BYTES = struct.pack("<Q", 5) + _IDS.tobytes()


def _idmap(outer: bytes = header(16, 5), inner: bytes = _GOOD_FLAT, ids: bytes = _IDS_BYTES):
    return IDMAP2 + outer + inner + ids


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "truncated: the fourcc"),
    "short tag": (b"IB", "truncated"),
    "only tag": (FLAT, "truncated: the index header"),
    "zip": (b"PK\x03\x04" + bytes(30), "does not start with a faiss fourcc"),
    "zeros": (bytes(64), "does not start with a faiss fourcc"),
    "float index": (b"IxF2" + bytes(64), "holds a faiss 'IxF2' index; " + SUPPORTED),
    "ivf": (b"IBwF" + bytes(64), "holds a faiss 'IBwF' index"),
    "d 0": (FLAT + header(0, 0, code_size=0) + bytes(8), "d = 0 at offset 4"),
    "d 12": (flat_bytes(12, _C), "d = 12 at offset 4 is not a positive multiple of 8"),
    "d negative": (FLAT + header(-16, 0, code_size=-2) + bytes(8), "d = -16"),
    "code size": (flat_bytes(16, _C, code_size=3), "code_size = 3 at offset 8 is not d / 8"),
    "ntotal negative": (FLAT + header(16, -1) + bytes(8), "ntotal = -1"),
    "ntotal too big": (flat_bytes(16, _C)[:12] + struct.pack("<q", 6) + _GOOD_FLAT[20:], "10"),
    "count mismatch": (flat_bytes(16, _C, count=12), "holds 12 elements, expected 10"),
    "untrained": (flat_bytes(16, _C, trained=0), "is_trained = 0"),
    "trained 2": (flat_bytes(16, _C, trained=2), "is_trained = 2"),
    "metric ip": (flat_bytes(16, _C, metric=0), "metric_type = 0"),
    "metric jaccard": (flat_bytes(16, _C, metric=23), "metric_type = 23"),
    "short codes": (_GOOD_FLAT[:-1], "truncated: the codes"),
    "trailing": (_GOOD_FLAT + b"\0", "1 unexpected trailing bytes at offset 43"),
    "idmap trailing": (_idmap() + b"xyz", "3 unexpected trailing bytes"),
    "idmap no ids": (_idmap(ids=b""), "truncated: the length of the ids"),
    "idmap short ids": (_idmap()[:-3], "truncated: the ids"),
    "idmap id count": (_idmap(ids=struct.pack("<Q", 4) + _IDS[:4].tobytes()), "holds 4"),
    "idmap huge ids": (_idmap(ids=struct.pack("<Q", 2**62)), "holds 4611686018427387904"),
    "idmap outer d": (_idmap(outer=header(24, 5)), "disagree"),
    "idmap outer n": (_idmap(outer=header(16, 4)), "disagree"),
    "idmap over idmap": (_idmap(inner=_idmap()), "holds a faiss 'IBM2' index over a 'IBM2'"),
    "idmap over hnsw": (_idmap(inner=b"IBHf" + bytes(64)), "index over a 'IBHf' sub-index"),
    "idmap over junk": (_idmap(inner=b"\0\xff" + bytes(64)), "has no faiss fourcc"),
    "idmap no sub": (IDMAP + header(16, 5), "truncated: the fourcc of the wrapped index"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files(tmp_path: Path, name: str) -> None:
    data, expected = BAD_FILES[name]
    with pytest.raises(ValueError) as caught:
        _parse_faiss_binary(data, "some/where.faiss")
    assert "'some/where.faiss'" in str(caught.value) and expected in str(caught.value)
    path = tmp_path / "bad.faiss"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"bad\.faiss") as caught:
        read_faiss_binary_file(path)
    assert expected in str(caught.value)


def test_huge_counts_allocate_nothing(tmp_path: Path) -> None:
    """Counts up to 2**63 are rejected before anything of their size is allocated."""
    path = tmp_path / "huge.faiss"
    cases = []
    for n in (2**20, 2**30, 2**40, 2**59, 2**62, 2**63 - 1):
        cases.append(FLAT + header(64, n) + struct.pack("<Q", (8 * n) % 2**64) + bytes(64))
        cases.append(_idmap(ids=struct.pack("<Q", n) + bytes(40)))
        cases.append(
            IDMAP + header(64, n) + FLAT + header(64, n) + struct.pack("<Q", (8 * n) % 2**64)
        )
    tracemalloc.start()
    try:
        for data in cases:
            with pytest.raises(ValueError):
                _parse_faiss_binary(data, "huge")
            path.write_bytes(data)
            with pytest.raises(ValueError):
                read_faiss_binary_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# --------------------------------------------------------------------------- fuzzing


def fields(tag: bytes, n: int, width: int) -> list[tuple[int, int, str]]:
    """(offset, size in bytes, kind) of every fixed field of a crafted file."""

    def index_fields(at: int) -> list[tuple[int, int, str]]:
        sizes = [(0, 4, "tag"), (4, 4, "int"), (8, 4, "int"), (12, 8, "int")]
        sizes += [(20, 1, "int"), (21, 4, "int")]  # d, code_size, ntotal, is_trained, metric
        return [(at + offset, size, kind) for offset, size, kind in sizes]

    if tag == FLAT:
        return [*index_fields(0), (25, 8, "int")]
    return [*index_fields(0), *index_fields(25), (50, 8, "int"), (58 + n * width, 8, "int")]


TAGS = [FLAT, IDMAP, IDMAP2, b"IBwF", b"IBHf", b"IxF2", b"IBxf", bytes(4), b"\xff" * 4]


def extreme_values(size: int, n: int, width: int) -> list[int]:
    near = [0, 1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256]
    near += [n - 1, n + 1, n * width - 1, n * width + 1, 8 * n, 8 * n + 8, width - 1, width + 1]
    big = [2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**61, 2**62, 2**63 - 1, 2**63]
    values = near + big + [-1, -2, -8, -(2**31), -(2**62), -(2**63)]
    return sorted({v % 2 ** (8 * size) for v in values})


def field_mutations(data: bytes, tag: bytes, n: int, width: int) -> Iterator[bytes]:
    for at, size, kind in fields(tag, n, width):
        if kind == "tag":
            for other in TAGS:
                yield data[:at] + other + data[at + 4 :]
        else:
            for value in extreme_values(size, n, width):
                yield data[:at] + value.to_bytes(size, "little") + data[at + size :]


EXTREME_WINDOWS = [b"\xff" * 8, b"\xff" * 7 + b"\x7f", bytes(7) + b"\x80", b"\0" * 8]


def random_mutation(rng: np.random.Generator, data: bytes, tag: bytes, n: int, width: int):
    buf = bytearray(data)
    kind = int(rng.integers(9))
    if kind == 0:  # bit flips
        for _ in range(int(rng.integers(1, 5))):
            at = int(rng.integers(len(buf)))
            buf[at] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # random bytes overwritten
        at = int(rng.integers(len(buf)))
        size = min(int(rng.integers(1, 9)), len(buf) - at)
        buf[at : at + size] = rng.bytes(size)
    elif kind == 2:  # an extreme 8-byte value anywhere
        at = int(rng.integers(len(buf)))
        window = EXTREME_WINDOWS[int(rng.integers(len(EXTREME_WINDOWS)))]
        buf[at : at + 8] = window[: len(buf) - at]
    elif kind == 3:  # a random value in a known field
        at, size, _ = fields(tag, n, width)[int(rng.integers(len(fields(tag, n, width))))]
        buf[at : at + size] = rng.bytes(size)
    elif kind == 4:  # truncated, maybe with garbage after
        buf = buf[: int(rng.integers(len(buf)))]
        if rng.random() < 0.5:
            buf += rng.bytes(int(rng.integers(1, 40)))
    elif kind == 5:  # garbage appended
        buf += rng.bytes(int(rng.integers(1, 40)))
    elif kind == 6:  # bytes inserted
        at = int(rng.integers(len(buf) + 1))
        buf[at:at] = rng.bytes(int(rng.integers(1, 17)))
    elif kind == 7:  # a slice deleted
        at = int(rng.integers(len(buf)))
        del buf[at : at + int(rng.integers(1, 17))]
    else:  # a slice copied elsewhere
        at, to = (int(v) for v in rng.integers(len(buf), size=2))
        size = int(rng.integers(1, 33))
        buf[to : to + size] = buf[at : at + size]
    return bytes(buf)


def check_outcome(parse: Callable[[bytes], FaissBinaryData], data: bytes, where: str) -> bool:
    """Parse mutated bytes: either ValueError naming ``where``, or a consistent result that
    re-encodes to exactly these bytes. Returns whether it parsed."""
    try:
        result = parse(data)
    except ValueError as error:
        assert repr(where) in str(error)
        return False
    check_shapes(result)
    assert craft(data[:4], result.n_bits, result.codes, result.ids) == data
    return True


def seeds(tag: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(valid file, n, bytes per code) to start mutating from."""
    rng = np.random.default_rng(list(KINDS.values()).index(tag))
    for n_bits, n in [(64, 5), (128, 20), (64, 0)]:
        codes, ids = random_data(rng, n_bits, n, tag != FLAT)
        yield craft(tag, n_bits, codes, ids), n, n_bits // 8


N_RANDOM_PER_SEED = 1200  # x 3 seeds x 3 kinds, plus field edits and truncations: > 10,000


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_parse(kind: str) -> None:
    tag = KINDS[kind]
    rng = np.random.default_rng(1000 + list(KINDS).index(kind))

    def parse(data: bytes) -> FaissBinaryData:
        return _parse_faiss_binary(data, "fuzz.faiss")

    tried = parsed = 0
    for data, n, width in seeds(tag):
        assert check_outcome(parse, data, "fuzz.faiss")
        mutants = list(field_mutations(data, tag, n, width))
        mutants += [random_mutation(rng, data, tag, n, width) for _ in range(N_RANDOM_PER_SEED)]
        if n == 20:  # every truncation of the largest one
            mutants += [data[:length] for length in range(len(data))]
        for mutant in mutants:
            try:
                parsed += check_outcome(parse, mutant, "fuzz.faiss")
            except Exception as error:
                raise AssertionError(f"mutant {mutant.hex()} of {kind}: {error!r}") from error
        tried += len(mutants)
    assert tried >= 3400
    assert parsed > 0  # some mutations (a flipped code bit, an id) are benign


def test_fuzz_files(tmp_path: Path) -> None:
    path = tmp_path / "fuzz.faiss"
    rng = np.random.default_rng(2000)
    tried = 0
    for tag in KINDS.values():
        for data, n, width in seeds(tag):
            mutants = [random_mutation(rng, data, tag, n, width) for _ in range(40)]
            mutants += [m for m in field_mutations(data, tag, n, width) if rng.random() < 0.1]
            for mutant in mutants:
                path.write_bytes(mutant)
                check_outcome(lambda _: read_faiss_binary_file(path), mutant, str(path))
            tried += len(mutants)
    assert tried >= 300
