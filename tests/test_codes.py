"""Packed-code layout: pack_bits, unpack_bits, binarize and code_bytes.

The documented errors of these functions are tested in test_errors.py (CODES_CASES).
"""

from __future__ import annotations

import deephash_ext
import numpy as np
import pytest
from deephash_ext import binarize, code_bytes, pack_bits, unpack_bits
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import pack_reference

WIDTHS = [8, 16, 24, 64, 72, 128, 200, 1024]


# --------------------------------------------------------------------------- pack_bits


@pytest.mark.parametrize("n_bits", WIDTHS)
@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int8, np.int32, np.int64, np.uint64])
def test_pack_bits_matches_numpy_little_endian(rng, n_bits, dtype):
    bits = rng.integers(0, 2, size=(37, n_bits)).astype(dtype)
    codes = pack_bits(bits)
    assert codes.dtype == np.uint8
    assert codes.shape == (37, n_bits // 8)
    np.testing.assert_array_equal(codes, pack_reference(bits))
    np.testing.assert_array_equal(codes, np.packbits(bits.astype(bool), axis=-1, bitorder="little"))


def test_pack_bits_layout_is_lsb_first():
    # bit j is bit j % 8 of byte j // 8
    for j in range(24):
        bits = np.zeros(24, dtype=np.uint8)
        bits[j] = 1
        expected = np.zeros(3, dtype=np.uint8)
        expected[j // 8] = 1 << (j % 8)
        np.testing.assert_array_equal(pack_bits(bits), expected)
    np.testing.assert_array_equal(
        pack_bits(np.array([[1, 0, 0, 0, 0, 0, 0, 1]])), np.array([[129]], dtype=np.uint8)
    )


def test_pack_bits_python_lists_and_bool_lists():
    row = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    np.testing.assert_array_equal(pack_bits(row), np.array([3, 128], dtype=np.uint8))
    np.testing.assert_array_equal(
        pack_bits([[bool(b) for b in row]]), np.array([[3, 128]], dtype=np.uint8)
    )


def test_pack_bits_1d_gives_1d(rng):
    bits = rng.integers(0, 2, size=64)
    codes = pack_bits(bits)
    assert codes.shape == (8,)
    np.testing.assert_array_equal(codes, pack_bits(bits[None, :])[0])


def test_pack_bits_empty_rows():
    codes = pack_bits(np.zeros((0, 16), dtype=bool))
    assert codes.shape == (0, 2) and codes.dtype == np.uint8


def test_pack_bits_non_contiguous_input(rng):
    bits = rng.integers(0, 2, size=(20, 128)).astype(np.uint8)
    for view in (bits[::3], bits[:, ::-1], np.asfortranarray(bits), bits[:, 8:72]):
        np.testing.assert_array_equal(pack_bits(view), pack_reference(np.ascontiguousarray(view)))


def test_pack_bits_does_not_modify_input(rng):
    bits = rng.integers(0, 2, size=(5, 32))
    before = bits.copy()
    pack_bits(bits)
    np.testing.assert_array_equal(bits, before)


# ------------------------------------------------------------------------- unpack_bits


@pytest.mark.parametrize("n_bits", WIDTHS)
def test_unpack_pack_round_trip(rng, n_bits):
    bits = rng.integers(0, 2, size=(23, n_bits)).astype(np.uint8)
    codes = pack_bits(bits)
    out = unpack_bits(codes)
    assert out.dtype == np.uint8
    assert out.shape == bits.shape
    np.testing.assert_array_equal(out, bits)
    np.testing.assert_array_equal(pack_bits(out), codes)


@pytest.mark.parametrize("code_width", [1, 3, 8, 13, 128])
def test_pack_unpack_round_trip_from_codes(rng, code_width):
    codes = rng.integers(0, 256, size=(11, code_width), dtype=np.uint8)
    bits = unpack_bits(codes)
    np.testing.assert_array_equal(bits, np.unpackbits(codes, axis=-1, bitorder="little"))
    np.testing.assert_array_equal(pack_bits(bits), codes)


def test_unpack_bits_prefix(rng):
    codes = rng.integers(0, 256, size=(9, 4), dtype=np.uint8)
    full = unpack_bits(codes)
    for n_bits in (1, 7, 8, 9, 31, 32):
        out = unpack_bits(codes, n_bits)
        assert out.shape == (9, n_bits)
        np.testing.assert_array_equal(out, full[:, :n_bits])
    np.testing.assert_array_equal(unpack_bits(codes, np.int64(12)), full[:, :12])


def test_unpack_bits_1d(rng):
    code = rng.integers(0, 256, size=5, dtype=np.uint8)
    out = unpack_bits(code)
    assert out.shape == (40,)
    np.testing.assert_array_equal(out, unpack_bits(code[None, :])[0])
    assert unpack_bits(code, n_bits=3).shape == (3,)


@settings(max_examples=50)
@given(
    st.lists(st.lists(st.booleans(), min_size=8, max_size=8), min_size=1, max_size=12),
    st.integers(1, 6),
)
def test_pack_unpack_property(byte_rows, n_rows):
    bits = np.array(byte_rows * n_rows, dtype=bool).reshape(n_rows, -1)
    codes = pack_bits(bits)
    np.testing.assert_array_equal(codes, pack_reference(bits))
    np.testing.assert_array_equal(unpack_bits(codes).astype(bool), bits)


# ---------------------------------------------------------------------------- binarize


@pytest.mark.parametrize("d", [8, 24, 64, 200, 1024])
def test_binarize_matches_reference(rng, d):
    X = rng.standard_normal((41, d)).astype(np.float32)
    np.testing.assert_array_equal(binarize(X), pack_reference(X > 0))
    t = rng.standard_normal(d).astype(np.float32)
    np.testing.assert_array_equal(binarize(X, t), pack_reference(X > t[None, :]))


def test_binarize_large_batch_uses_same_rule(rng, restore_num_threads):
    # large enough (n * d >= 2**16) for the packing to be split across threads
    X = rng.standard_normal((3001, 64)).astype(np.float32)
    expected = pack_reference(X > 0)
    for threads in (1, 2, 3):
        deephash_ext.set_num_threads(threads)
        np.testing.assert_array_equal(binarize(X), expected)


def test_binarize_is_strict_at_equality():
    X = np.array([[0.0, -0.0, 1.0, -1.0, 0.5, 0.5, 2.0, 1e-30]], dtype=np.float32)
    # bit = X > 0: zero and negative zero both give 0
    np.testing.assert_array_equal(binarize(X), pack_reference(np.array([[0, 0, 1, 0, 1, 1, 1, 1]])))
    # every value equal to its threshold gives 0
    np.testing.assert_array_equal(binarize(X, X[0]), np.array([[0]], dtype=np.uint8))
    # scalar threshold equal to some values
    np.testing.assert_array_equal(
        binarize(X, 0.5), pack_reference(np.array([[0, 0, 1, 0, 0, 0, 1, 0]]))
    )


def test_binarize_per_column_thresholds():
    X = np.tile(np.arange(8, dtype=np.float32), (3, 1))  # every row is 0..7
    t = np.array([-1, 0, 1, 3, 5, 5, 5, 100], dtype=np.float32)
    # columns: 0>-1, 1>0, 2>1, 3>3 no, 4>5 no, 5>5 no, 6>5, 7>100 no
    expected = pack_reference(np.array([[1, 1, 1, 0, 0, 0, 1, 0]] * 3))
    np.testing.assert_array_equal(binarize(X, t), expected)
    np.testing.assert_array_equal(binarize(X, t.tolist()), expected)
    np.testing.assert_array_equal(binarize(X, t.astype(np.int64)), expected)


def test_binarize_docstring_example():
    np.testing.assert_array_equal(
        binarize([[0.5, -1, 0, 2, 3, -3, 0.1, 0]], 0.0), np.array([[89]], dtype=np.uint8)
    )


def test_binarize_1d_gives_1d(rng):
    x = rng.standard_normal(32)
    out = binarize(x)
    assert out.shape == (4,) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, binarize(x[None, :])[0])
    np.testing.assert_array_equal(out, pack_reference(x.astype(np.float32) > 0))


def test_binarize_compares_in_float32():
    # Converted to float32, 1 + 1e-9 is exactly 1.0: equal to the threshold, so bit 0
    # (a float64 comparison would give 1).
    X = np.full((1, 8), 1.0 + 1e-9, dtype=np.float64)
    np.testing.assert_array_equal(binarize(X, 1.0), np.array([[0]], dtype=np.uint8))
    # A float64 threshold is converted too: float32(0.1) == float32(float64 0.1)
    X32 = np.full((2, 8), 0.1, dtype=np.float32)
    np.testing.assert_array_equal(binarize(X32, np.float64(0.1)), np.zeros((2, 1), np.uint8))
    np.testing.assert_array_equal(
        binarize(X32, np.full(8, 0.1, dtype=np.float64)), np.zeros((2, 1), np.uint8)
    )
    # Integers beyond 2**24 also round in float32
    Xi = np.full((1, 8), 2**24 + 1, dtype=np.int64)
    np.testing.assert_array_equal(binarize(Xi, 2**24), np.array([[0]], dtype=np.uint8))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.uint8, bool])
def test_binarize_other_real_dtypes(rng, dtype):
    X = (rng.standard_normal((13, 16)) * 3).astype(dtype)
    np.testing.assert_array_equal(binarize(X), pack_reference(X.astype(np.float32) > 0))
    np.testing.assert_array_equal(binarize(X, 1), pack_reference(X.astype(np.float32) > 1))


def test_binarize_non_contiguous_input(rng):
    X = rng.standard_normal((30, 64)).astype(np.float32)
    for view in (X[::2], X[:, ::-1], np.asfortranarray(X), X[:, 16:40]):
        np.testing.assert_array_equal(binarize(view), pack_reference(view > 0))


def test_binarize_infinities():
    X = np.array([[np.inf, -np.inf, 0, 1, np.inf, -np.inf, 5, -5]], dtype=np.float32)
    np.testing.assert_array_equal(binarize(X), pack_reference(X > 0))
    np.testing.assert_array_equal(binarize(X, np.inf), np.array([[0]], dtype=np.uint8))
    np.testing.assert_array_equal(binarize(X, -np.inf), pack_reference(X > -np.inf))


def test_binarize_empty_rows():
    out = binarize(np.zeros((0, 16), dtype=np.float32))
    assert out.shape == (0, 2) and out.dtype == np.uint8


def test_binarize_does_not_modify_input(rng):
    X = rng.standard_normal((4, 16))
    t = rng.standard_normal(16)
    X0, t0 = X.copy(), t.copy()
    binarize(X, t)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(t, t0)


def test_binarize_then_unpack_round_trip(rng):
    X = rng.standard_normal((17, 48))
    np.testing.assert_array_equal(unpack_bits(binarize(X)), (X.astype(np.float32) > 0))


# -------------------------------------------------------------------------- code_bytes


def test_code_bytes():
    assert code_bytes(8) == 1
    assert code_bytes(64) == 8
    assert code_bytes(np.int32(1000)) == 125
    with pytest.raises(ValueError, match="n_bits"):
        code_bytes(12)
    with pytest.raises(ValueError, match="n_bits"):
        code_bytes(0)
    with pytest.raises(TypeError, match="n_bits"):
        code_bytes(8.0)
