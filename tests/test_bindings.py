"""The compiled modules' boundary: integer arguments are converted by name (never pybind's
raw signature dump), argument meaning is checked by the core with the same messages on
CPU and GPU, limits are module attributes, test-only bindings live in ``_core._testing``,
and the thread team is sized by the work."""

from __future__ import annotations

import numpy as np
import pytest
from deephash_ext import RBM, _core
from deephash_ext._blas import ensure_blas

RAW_DUMP = "incompatible function arguments"


def _rbm_arrays(rng: np.random.Generator, n_hidden: int = 8, n_visible: int = 6):
    W = (rng.standard_normal((n_hidden, n_visible)) * 0.1).astype(np.float32)
    b, c = np.zeros(n_hidden, np.float32), np.zeros(n_visible, np.float32)
    return [W, b, c, np.zeros_like(W), np.zeros_like(b), np.zeros_like(c)]


def _cd_kwargs(**changes):
    kwargs = dict(
        batch_size=10,
        learning_rate=0.1,
        momentum=0.5,
        weight_decay=0.0,
        hashing_reg=0.0,
        cd_k=1,
        seed=0,
        first_step=0,
    )
    kwargs.update(changes)
    return kwargs


def _raises_naming(exc, name: str, fn) -> None:
    with pytest.raises(exc) as info:
        fn()
    message = str(info.value)
    assert name in message and RAW_DUMP not in message, message


@pytest.mark.parametrize("param, value", [("cd_k", 2**31), ("batch_size", 2**64)])
def test_rbm_fit_with_out_of_range_integers_names_the_parameter(param, value):
    V = (np.random.default_rng(0).random((20, 6)) < 0.5).astype(np.float32)
    model = RBM(4, n_epochs=1, random_state=0, **{param: value})
    _raises_naming(ValueError, param, lambda: model.fit(V))


@pytest.mark.parametrize(
    "param, value, exc",
    [
        ("cd_k", 2**31, ValueError),
        ("cd_k", -1, ValueError),
        ("cd_k", 0, ValueError),
        ("cd_k", 1.0, TypeError),
        ("cd_k", True, TypeError),
        ("batch_size", 0, ValueError),
        ("batch_size", -5, ValueError),
        ("batch_size", "10", TypeError),
        ("seed", -1, ValueError),
        ("seed", 2**64, ValueError),
        ("seed", None, TypeError),
        ("first_step", -3, ValueError),
        ("first_step", 2**70, ValueError),
        ("learning_rate", "fast", TypeError),
        ("momentum", None, TypeError),
        ("hashing_reg", [0.1], TypeError),
    ],
)
def test_rbm_cd_train_converts_each_scalar_by_name(rng, param, value, exc):
    ensure_blas()
    arrays = _rbm_arrays(rng)
    before = [a.copy() for a in arrays]
    V = (rng.random((10, 6)) < 0.5).astype(np.float32)
    order = np.arange(10, dtype=np.int64)
    _raises_naming(
        exc, param, lambda: _core.rbm_cd_train(*arrays, V, order, **_cd_kwargs(**{param: value}))
    )
    for a, b in zip(before, arrays):  # checked before any update
        np.testing.assert_array_equal(a, b)


def test_rbm_cd_train_takes_its_scalars_by_keyword_only(rng):
    ensure_blas()
    arrays = _rbm_arrays(rng)
    V = (rng.random((10, 6)) < 0.5).astype(np.float32)
    order = np.arange(10, dtype=np.int64)
    with pytest.raises(TypeError):
        _core.rbm_cd_train(*arrays, V, order, 10, 0.1, 0.5, 0.0, 0.0, 1, 0, 0)
    # numpy scalars are accepted (they are what a model's parameters often are)
    _core.rbm_cd_train(
        *arrays,
        V,
        order,
        **_cd_kwargs(
            batch_size=np.int64(10),
            learning_rate=np.float32(0.1),
            cd_k=np.uint8(2),
            seed=np.uint64(2**63),
        ),
    )


def test_cuda_rbm_cd_train_checks_scalars_the_same_way(rng):
    try:
        from deephash_ext import _cuda
    except ImportError:
        pytest.skip("the CUDA module is not built")
    arrays = _rbm_arrays(rng)
    V = (rng.random((10, 6)) < 0.5).astype(np.float32)
    order = np.arange(10, dtype=np.int64)
    # the scalars are converted before the device is touched, with or without a GPU
    _raises_naming(
        ValueError,
        "cd_k",
        lambda: _cuda.rbm_cd_train(*arrays, V, order, **_cd_kwargs(cd_k=2**31), device=0),
    )
    _raises_naming(
        TypeError,
        "seed",
        lambda: _cuda.rbm_cd_train(*arrays, V, order, **_cd_kwargs(seed=1.5), device=0),
    )


CODES = np.random.default_rng(3).integers(0, 256, (10, 4), dtype=np.uint8)
QUERIES = CODES[:3].copy()


@pytest.mark.parametrize(
    "call, exc, name",
    [
        (lambda: _core.knn_hamming(CODES, QUERIES, 2**70), ValueError, "k"),
        (lambda: _core.knn_hamming(CODES, QUERIES, -(2**70)), ValueError, "k"),
        (lambda: _core.knn_hamming(CODES, QUERIES, 0), ValueError, "k must be in [1, 10]"),
        (lambda: _core.knn_hamming(CODES, QUERIES, 11), ValueError, "k must be in [1, 10]"),
        (lambda: _core.knn_hamming(CODES, QUERIES, 2.0), TypeError, "k must be an integer"),
        (lambda: _core.knn_hamming(CODES, QUERIES, np.bool_(True)), TypeError, "k must be"),
        (
            lambda: _core.knn_hamming(CODES, QUERIES[:, :3], 1),
            ValueError,
            "queries have 3 bytes per code but codes have 4",
        ),
        (lambda: _core.knn_hamming(CODES, QUERIES[:0, :3], 1), ValueError, "queries have 3 bytes"),
        (lambda: _core.range_hamming(CODES, QUERIES, -1), ValueError, "max_distance must be >= 0"),
        (lambda: _core.range_hamming(CODES, QUERIES, "1"), TypeError, "max_distance"),
        (lambda: _core.range_hamming(CODES, QUERIES[:, :3], 1), ValueError, "queries have 3 bytes"),
        (lambda: _core.set_num_threads(2**40), ValueError, "n must be in [1, 4096]"),
        (lambda: _core.set_num_threads(2.0), TypeError, "n must be an integer"),
    ],
)
def test_search_bindings_name_the_parameter(call, exc, name):
    _raises_naming(exc, name, call)


def test_range_radius_saturates():
    lims, _, _ = _core.range_hamming(CODES, QUERIES, 2**200)
    assert lims.tolist() == [0, 10, 20, 30]


def test_limits_are_module_attributes():
    assert _core.max_threads == 4096
    try:
        from deephash_ext import _cuda
    except ImportError:
        return
    assert _cuda.max_code_bytes == 1024 and _cuda.max_codes == 2**40


def test_test_only_bindings_live_in_the_testing_submodule():
    for name in ("sgemm_nt", "rbm_uniforms", "uniform_rank_targets", "threads_started"):
        assert not hasattr(_core, name), name
        assert callable(getattr(_core._testing, name)), name


def _encoder(rng, d: int, bits: int):
    W = rng.standard_normal((bits, d)).astype(np.float32)
    return [W], [np.zeros(bits, np.float32)]


def _started_by(fn) -> int:
    before = _core._testing.threads_started()
    fn()
    return _core._testing.threads_started() - before


def test_small_calls_start_no_threads_whatever_the_thread_count(rng, restore_num_threads):
    """A one-row encode, a one-row mean and a tiny CD-k call do the work of one thread: at
    64 threads they must not start a team of 63 (they used to: 12 ms for a 0.08 ms encode)."""
    ensure_blas()
    weights, offsets = _encoder(rng, 64, 1024)
    x1 = rng.standard_normal((1, 64)).astype(np.float32)
    arrays = _rbm_arrays(rng)
    V = (rng.random((10, 6)) < 0.5).astype(np.float32)
    order = np.arange(10, dtype=np.int64)
    _core.set_num_threads(1)
    expected = _core.encode_layers(x1, None, weights, offsets)
    _core.set_num_threads(64)
    assert _started_by(lambda: _core.encode_layers(x1, None, weights, offsets)) == 0
    np.testing.assert_array_equal(_core.encode_layers(x1, None, weights, offsets), expected)
    assert _started_by(lambda: _core.mean_projection(x1, None, weights[0])) == 0
    assert _started_by(lambda: _core.rbm_cd_train(*arrays, V, order, **_cd_kwargs())) == 0


def test_large_calls_still_use_the_threads(rng, restore_num_threads):
    """Sizing by the work must not turn large calls serial, nor change their results."""
    ensure_blas()
    weights, offsets = _encoder(rng, 256, 1024)
    x = rng.standard_normal((2048, 256)).astype(np.float32)
    _core.set_num_threads(1)
    expected = _core.encode_layers(x, None, weights, offsets)
    assert _started_by(lambda: _core.encode_layers(x, None, weights, offsets)) == 0
    _core.set_num_threads(4)
    got = None

    def run():
        nonlocal got
        got = _core.encode_layers(x, None, weights, offsets)

    started = _started_by(run)
    assert 1 <= started <= 3  # one team of at most 3 workers for the whole call
    np.testing.assert_array_equal(got, expected)
