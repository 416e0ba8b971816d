"""Index files that carry MIH tables (sections 4-6, docs/index_format.md): the tables
round-trip and are searched in place when mapped, and damaged files (more than 3,000 of
them, including tables rewritten with valid checksums) load as a ValueError or as an
index whose searches never crash."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from deephash_ext import BinaryIndex

HEADER = struct.Struct("<8sIIIIQQQIIII")
SECTION = struct.Struct("<IIQQII")
PLAN_HEAD = struct.Struct("<QQ")


def table_end(data: bytes | bytearray) -> int:
    n_sections = struct.unpack_from("<I", data, 48)[0]
    return HEADER.size + n_sections * SECTION.size


def entries(data: bytes | bytearray) -> list[tuple[int, int, int, int, int, int]]:
    return list(SECTION.iter_unpack(bytes(data[HEADER.size : table_end(data)])))


def recrc(data: bytearray, section: int | None = None) -> bytearray:
    """Recomputes a section's CRC in the table (when given), then the header's."""
    if section is not None:
        at = HEADER.size + section * SECTION.size
        _, _, offset, length, _, _ = SECTION.unpack_from(data, at)
        struct.pack_into("<I", data, at + 24, zlib.crc32(bytes(data[offset : offset + length])))
    end = table_end(data)
    struct.pack_into(
        "<I", data, 56, zlib.crc32(bytes(data[HEADER.size : end]), zlib.crc32(bytes(data[:56])))
    )
    return data


def saved(tmp_path, n_bits, n_rows, removed=0, tail=0, seed=0) -> tuple[BinaryIndex, bytes]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n_rows, n_bits // 8), dtype=np.uint8)
    codes[::5] = codes[0]
    index = BinaryIndex(n_bits, method="auto", compact_threshold=None)
    index.add(codes)
    index.search(codes[:1], 1)  # builds the tables over these rows
    index.remove(rng.choice(n_rows, removed, replace=False))
    if tail:
        index.add(rng.integers(0, 256, (tail, n_bits // 8), dtype=np.uint8))
    path = tmp_path / f"mih-{n_bits}-{n_rows}-{removed}-{tail}.dhx"
    index.save(path)
    return index, path.read_bytes()


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mih-bases")
    return {
        "16b": saved(tmp, 16, 1024)[1],
        "24b-removed-tail": saved(tmp, 24, 1088, removed=40, tail=30, seed=1)[1],
    }


@pytest.mark.parametrize("n_bits", [16, 64, 72])
@pytest.mark.parametrize("mmap", [False, True])
def test_tables_round_trip_and_search_in_place(tmp_path, n_bits, mmap):
    index, data = saved(tmp_path, n_bits, 2048, removed=100, tail=50, seed=n_bits)
    assert struct.unpack_from("<I", data, 48)[0] == 6
    path = tmp_path / "copy.dhx"
    path.write_bytes(data)
    loaded = BinaryIndex.load(path, mmap=mmap, verify=True)
    assert loaded.method == "auto" and loaded.mapped == mmap
    tables, original = loaded._snapshot.mih, index._snapshot.mih
    assert tables is not None and tables.n_indexed == original.n_indexed
    for name in ("begins", "widths", "offsets", "rows"):
        np.testing.assert_array_equal(getattr(tables, name), getattr(original, name))
    if mmap:  # the tables are views of the file, not copies
        assert not tables.rows.flags.owndata and not tables.rows.flags.writeable
    flat = BinaryIndex.load(path, method="flat")
    assert flat._snapshot.mih is not None and flat.method == "flat"
    queries = np.concatenate([index.get(index.ids[:5]), np.zeros((1, n_bits // 8), np.uint8)])
    for k in (1, 10, 200):
        for a, b in zip(loaded.search(queries, k), flat.search(queries, k)):
            np.testing.assert_array_equal(a, b)
    for radius in (0, 2, n_bits // 3, n_bits):
        for a, b in zip(loaded.range_search(queries, radius), flat.range_search(queries, radius)):
            np.testing.assert_array_equal(a, b)


def test_flat_index_files_have_no_tables(tmp_path):
    index = BinaryIndex(64)
    index.add(np.zeros((2000, 8), np.uint8))
    index.save(tmp_path / "flat.dhx")
    assert struct.unpack_from("<I", (tmp_path / "flat.dhx").read_bytes(), 48)[0] == 3
    assert BinaryIndex.load(tmp_path / "flat.dhx").method == "flat"


def test_load_rejects_an_unknown_method(tmp_path, bases):
    path = tmp_path / "x.dhx"
    path.write_bytes(bases["16b"])
    with pytest.raises(ValueError, match="method"):
        BinaryIndex.load(path, method="ivf")


def _search_or_value_error(index: BinaryIndex) -> None:
    """Searches that may refuse corrupt tables with a ValueError, never anything else."""
    q = np.zeros((3, index.code_bytes), np.uint8)
    q[1] = 255
    for call in (
        lambda: index.search(q, min(len(index), 5)),
        lambda: index.range_search(q, 2),
        lambda: index.range_search(q, index.n_bits),
    ):
        try:
            call()
        except ValueError:
            pass


def test_fuzzed_mih_files(tmp_path, bases):
    rng = np.random.default_rng(7)
    path, scratch = tmp_path / "fuzz.dhx", tmp_path / "fuzz.next"
    modes = [(False, None), (True, None), (True, True), (True, False)]
    loads = loaded = 0

    def load(data: bytes | bytearray, what: str) -> None:
        nonlocal loads, loaded
        mmap, verify = modes[loads % len(modes)]
        loads += 1
        scratch.write_bytes(bytes(data))
        scratch.replace(path)
        try:
            index = BinaryIndex.load(path, mmap=mmap, verify=verify)
        except ValueError as error:
            assert str(path) in str(error), what
            return
        except BaseException as error:
            raise AssertionError(f"{what}: {error!r}") from error
        loaded += 1
        try:
            _search_or_value_error(index)
        except BaseException as error:
            raise AssertionError(f"{what}: search raised {error!r}") from error

    for name, base in bases.items():
        sections = entries(base)
        for length in rng.choice(len(base), 150, replace=False):  # truncations
            load(base[:length], f"{name} truncated to {length}")
        for _ in range(400):  # bit flips anywhere
            data = bytearray(base)
            for bit in rng.integers(0, 8 * len(data), int(rng.integers(1, 4))):
                data[bit // 8] ^= 1 << (bit % 8)
            load(data, f"{name} bit flips")
        for _ in range(500):  # the plan rewritten, its CRC and the header's recomputed
            data = bytearray(base)
            _, _, offset, length, _, _ = sections[3]
            m = (length - PLAN_HEAD.size) // 8
            field = int(rng.integers(3))
            if field == 0:
                value = [0, 64, 1 << 31, 1 << 32, 2**64 - 1, int(rng.integers(0, 4096))][
                    int(rng.integers(6))
                ]
                struct.pack_into("<Q", data, offset, value)
            elif field == 1:
                struct.pack_into("<Q", data, offset + 8, int(rng.integers(0, 2 * m + 2)))
            else:
                at = offset + PLAN_HEAD.size + 4 * int(rng.integers(2 * m))
                struct.pack_into(
                    "<I",
                    data,
                    at,
                    [0, 1, 31, 32, 33, 2**32 - 1, int(rng.integers(64))][int(rng.integers(7))],
                )
            load(recrc(data, 3), f"{name} plan field {field}")
        for _ in range(400):  # table contents rewritten with valid checksums
            data = bytearray(base)
            section = int(rng.integers(4, 6))
            _, _, offset, length, _, _ = sections[section]
            for _ in range(int(rng.integers(1, 6))):
                at = offset + 4 * int(rng.integers(length // 4))
                value = [0, 1, 2**31, 2**32 - 1, int(rng.integers(0, 5000))][int(rng.integers(5))]
                struct.pack_into("<I", data, at, value)
            load(recrc(data, section), f"{name} section {section + 1} rewritten")
        for _ in range(150):  # MIH table entries rewritten, header CRC recomputed
            data = bytearray(base)
            entry = 3 + int(rng.integers(3))
            at = HEADER.size + entry * SECTION.size + [8, 16][int(rng.integers(2))]
            struct.pack_into(
                "<Q",
                data,
                at,
                [0, 64, 2**40, 2**63, int(rng.integers(1 << 20))][int(rng.integers(5))],
            )
            load(recrc(data), f"{name} entry {entry}")
        for n_sections in (4, 5, 7, 0):  # a section count that is not 3 or 6
            data = bytearray(base)
            struct.pack_into("<I", data, 48, n_sections)
            load(recrc(data), f"{name} n_sections {n_sections}")
    assert loads >= 3000 and loaded > 0
