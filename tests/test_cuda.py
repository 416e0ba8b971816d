"""The CUDA module: detection and device choice (everywhere), and on a GPU the search and
RBM kernels, bit-exact against the NumPy reference and the CPU.

Tests marked `cuda` skip when no GPU is visible; the others check what a machine without
a GPU must do: report why, raise typed errors for device="cuda", and fall back for "auto".
"""

from __future__ import annotations

import deephash_ext
import numpy as np
import pytest
from deephash_ext import RBM, DeepHash, GpuCodes, _gpu, range_search, search
from devices import requires_cuda
from reference import knn_reference, range_reference, tie_heavy_codes

no_cuda = pytest.mark.skipif(deephash_ext.cuda_available(), reason="a GPU is visible")
cuda = [pytest.mark.cuda, requires_cuda]


@pytest.fixture
def codes(rng):
    return rng.integers(0, 256, (300, 8), dtype=np.uint8)


# ==================================================================== everywhere


def test_build_info_reports_cuda():
    info = deephash_ext.build_info()
    for key in (
        "cuda_compiled",
        "cuda_architectures",
        "cuda_available",
        "cuda_unavailable_reason",
        "cuda_device",
        "cublas",
    ):
        assert key in info
    assert info["cuda_available"] == deephash_ext.cuda_available()
    assert info["cuda_unavailable_reason"] == deephash_ext.cuda_unavailable_reason()
    if info["cuda_compiled"]:
        assert "90" in ",".join(info["cuda_architectures"])  # the H100 target is built in
    if not info["cuda_available"]:
        assert isinstance(info["cuda_unavailable_reason"], str) and info["cuda_unavailable_reason"]
        assert info["cuda_device"] is None


@pytest.mark.parametrize(
    "device, error", [("gpu", ValueError), ("CUDA", ValueError), (0, TypeError), (None, None)]
)
def test_device_names_are_checked(codes, device, error):
    if error is None:  # None is the default: where the codes are
        search(codes, codes[:2], 3, device=device)
        return
    with pytest.raises(error, match="device"):
        search(codes, codes[:2], 3, device=device)
    with pytest.raises(error, match="device"):
        range_search(codes, codes[:2], 3, device=device)
    with pytest.raises(error, match="device"):
        RBM(8, device=device).fit(np.zeros((4, 6), np.float32))


def test_auto_gives_the_cpu_results(codes):
    q = codes[:17]
    cpu = search(codes, q, 25)
    auto = search(codes, q, 25, device="auto")
    for a, b in zip(cpu, auto):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(range_search(codes, q, 20), range_search(codes, q, 20, device="auto")):
        np.testing.assert_array_equal(a, b)


@no_cuda
def test_cuda_without_gpu_raises_runtime_error_with_the_reason(codes):
    reason = deephash_ext.cuda_unavailable_reason()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        search(codes, codes[:2], 3, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        range_search(codes, codes[:2], 3, device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available") as info:
        GpuCodes(codes)
    assert reason in str(info.value)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        _gpu.ensure_cublas()


@no_cuda
def test_rbm_on_cuda_without_gpu_fails_before_any_change(rng):
    V = (rng.random((50, 12)) < 0.5).astype(np.float32)
    model = RBM(8, n_epochs=1, random_state=0).fit(V)
    before = model.components_.copy()
    model.set_params(device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        model.fit(V)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        model.partial_fit(V)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        model.encode(V)
    np.testing.assert_array_equal(model.components_, before)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        DeepHash((8,), n_epochs=1, device="cuda").fit(V)


@no_cuda
def test_rbm_auto_without_gpu_equals_cpu(rng):
    V = (rng.random((80, 12)) < 0.5).astype(np.float32)
    cpu = RBM(8, n_epochs=2, random_state=3).fit(V)
    auto = RBM(8, n_epochs=2, random_state=3, device="auto").fit(V)
    np.testing.assert_array_equal(cpu.components_, auto.components_)
    np.testing.assert_array_equal(cpu.encode(V), auto.encode(V))


def test_cublas_search_order_honours_the_environment(monkeypatch):
    monkeypatch.setenv("DEEPHASH_CUBLAS", "/opt/my/libcublas.so.13")
    candidates = _gpu._cublas_candidates()
    assert candidates[0] == "/opt/my/libcublas.so.13"
    assert "libcublas.so.13" in candidates
    assert not any("cublasLt" in c for c in candidates)


# ==================================================================== on a GPU

WIDTHS = [1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 64, 100, 128, 129, 256, 1024]


@pytest.mark.parametrize("code_bytes", WIDTHS)
@pytest.mark.parametrize("tie_heavy", [False, True])
@pytest.mark.cuda
@requires_cuda
def test_gpu_search_is_bit_exact(rng, code_bytes, tie_heavy):
    n = 2000
    db = (
        tie_heavy_codes(rng, n, code_bytes)
        if tie_heavy
        else rng.integers(0, 256, (n, code_bytes), dtype=np.uint8)
    )
    q = np.concatenate([db[:5], rng.integers(0, 256, (40, code_bytes), dtype=np.uint8)])
    index = GpuCodes(db)
    for k in (1, 7, 100, n):
        d, i = index.search(q, k)
        rd, ri = knn_reference(db, q, k)
        np.testing.assert_array_equal(d, rd)
        np.testing.assert_array_equal(i, ri)
    for radius in (0, 3, 4 * code_bytes, 8 * code_bytes, 10**9):
        for got, want in zip(index.range_search(q, radius), range_reference(db, q, radius)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.cuda
@requires_cuda
def test_gpu_search_large_k_many_queries_and_views(rng):
    db = rng.integers(0, 256, (30000, 16), dtype=np.uint8)
    q = rng.integers(0, 256, (9000, 8), dtype=np.uint8)  # > one query batch of 8192
    view = db[:, 4:12]  # rows 16 bytes apart: read in place
    for a, b in zip(search(view, q, 10, device="cuda"), search(view, q, 10)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(search(db, db[:50], 5000, device="cuda"), search(db, db[:50], 5000)):
        np.testing.assert_array_equal(a, b)  # k above faiss's 2048 cap


@pytest.mark.cuda
@requires_cuda
def test_gpu_codes_stay_resident(rng):
    db = rng.integers(0, 256, (5000, 32), dtype=np.uint8)
    index = GpuCodes(db)
    assert len(index) == 5000 and index.code_bytes == 32 and index.nbytes == 5000 * 32
    assert "GpuCodes(n=5000" in repr(index)
    for _ in range(3):
        q = rng.integers(0, 256, (20, 32), dtype=np.uint8)
        for a, b in zip(search(index, q, 9), search(db, q, 9)):
            np.testing.assert_array_equal(a, b)
    d1, i1 = search(index, db[0], 4)  # one 1-D query gives 1-D results
    assert d1.shape == (4,) and d1[0] == 0
    with pytest.raises(ValueError, match="GpuCodes"):
        search(index, db[:2], 3, device="cpu")
    with pytest.raises(ValueError, match="bytes per code"):
        index.search(db[:2, :8], 3)
    with pytest.raises(ValueError, match="k must be"):
        index.search(db[:2], 5001)
    with pytest.raises(ValueError, match="at most 1024 bytes"):
        GpuCodes(np.zeros((2, 1025), np.uint8))
    with pytest.raises(ValueError, match="device"):
        GpuCodes(db, device_id=10**6)


@pytest.mark.cuda
@requires_cuda
def test_gpu_rbm_fit_is_reproducible_and_close_to_cpu(rng):
    V = (rng.random((600, 64)) < 0.3).astype(np.float32)
    params = dict(n_hidden=32, n_epochs=3, learning_rate=0.05, hashing_reg=0.3, random_state=7)
    gpu1 = RBM(**params, device="cuda").fit(V)
    gpu2 = RBM(**params, device="cuda").fit(V)
    np.testing.assert_array_equal(gpu1.components_, gpu2.components_)
    cpu = RBM(**params).fit(V)
    # Same random numbers, products summed in another order: a few sampled units may flip
    # where u is within rounding of p, so compare in the aggregate.
    assert np.abs(gpu1.components_ - cpu.components_).mean() < 1e-3
    assert (gpu1.encode(V) == cpu.encode(V)).mean() > 0.95


@pytest.mark.cuda
@requires_cuda
def test_gpu_deephash_encode_matches_cpu(rng):
    X = rng.normal(size=(400, 48)).astype(np.float32)
    model = DeepHash((32, 16), n_epochs=2, learning_rate=0.05, random_state=0).fit(X)
    cpu = model.encode(X)
    gpu = model.set_params(device="cuda").encode(X)
    assert (np.unpackbits(cpu) != np.unpackbits(gpu)).mean() < 1e-3
