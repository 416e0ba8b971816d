"""NumPy reference implementation: the specification the package is tested against.

Everything here is deliberately simple and obviously correct (no blocking tricks, no
early termination): a distance is the popcount of the XOR of two packed rows, and results
are ranked by (distance, index) with ties going to the smaller index.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "hamming_matrix",
    "knn_reference",
    "pack_reference",
    "range_reference",
    "rank_reference",
    "tie_heavy_codes",
]

# Bound the (chunk of queries, n) uint64 temporaries to about this many bytes.
_CHUNK_BYTES = 1 << 25


def _as_2d_codes(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    assert a.dtype == np.uint8, a.dtype
    return a.reshape(1, -1) if a.ndim == 1 else a


def _as_words(a: np.ndarray) -> np.ndarray:
    """Rows zero-padded to a multiple of 8 bytes and viewed as uint64 words.

    Zero padding leaves every XOR popcount unchanged; it only lets NumPy count 64 bits
    at a time instead of 8.
    """
    pad = -a.shape[1] % 8
    if pad:
        a = np.concatenate([a, np.zeros((a.shape[0], pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(a).view(np.uint64)


def hamming_matrix(db: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(nq, n) int64 matrix of Hamming distances: popcount(q[i] XOR db[j])."""
    db = _as_2d_codes(db)
    q = _as_2d_codes(q)
    assert db.shape[1] == q.shape[1]
    dbw, qw = _as_words(db), _as_words(q)
    n, words = dbw.shape
    out = np.empty((q.shape[0], n), dtype=np.int64)
    chunk = max(1, _CHUNK_BYTES // max(1, 8 * n))
    for s in range(0, q.shape[0], chunk):
        # sum over words of popcount(q XOR db): np.bitwise_count(q[:, None] ^ db[None]).sum(-1),
        # one word at a time so that every operation runs along the long n axis
        acc = out[s : s + chunk]
        acc[...] = 0
        for j in range(words):
            acc += np.bitwise_count(qw[s : s + chunk, None, j] ^ dbw[None, :, j])
    return out


def _stable_order(dist: np.ndarray) -> np.ndarray:
    """Per row, the column order by (distance, column)."""
    # A stable sort on the distance keeps equal distances in index order. Distances fit
    # in int16 up to 4095-byte codes, where NumPy's stable sort is a (fast) radix sort.
    keys = dist.astype(np.int16) if dist.size == 0 or dist.max() < 2**15 else dist
    return np.argsort(keys, axis=1, kind="stable")


def rank_reference(db: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every code of db ranked by (distance, index) for each query.

    Returns (distances int32 (nq, n), indices int64 (nq, n)); the top-k is the first k
    columns.
    """
    dist = hamming_matrix(db, q)
    order = _stable_order(dist)
    return (np.take_along_axis(dist, order, axis=1).astype(np.int32), order.astype(np.int64))


def knn_reference(db: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by (distance, index): (distances int32 (nq, k), indices int64 (nq, k))."""
    dist = hamming_matrix(db, q)
    order = _stable_order(dist)[:, :k]
    return (np.take_along_axis(dist, order, axis=1).astype(np.int32), order.astype(np.int64))


def range_reference(
    db: np.ndarray, q: np.ndarray, r: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every code with distance <= r, per query sorted by (distance, index), faiss layout."""
    dist = hamming_matrix(db, q)
    lims = [0]
    all_d, all_i = [], []
    for row in dist:
        hits = np.flatnonzero(row <= r)
        hits = hits[np.argsort(row[hits], kind="stable")]
        all_d.append(row[hits])
        all_i.append(hits)
        lims.append(lims[-1] + len(hits))
    distances = np.concatenate(all_d) if all_d else np.empty(0, dtype=np.int64)
    indices = np.concatenate(all_i) if all_i else np.empty(0, dtype=np.int64)
    return (np.asarray(lims, dtype=np.int64), distances.astype(np.int32), indices.astype(np.int64))


def pack_reference(bits: np.ndarray) -> np.ndarray:
    """The packed-code layout: bit j is bit j % 8 (LSB first) of byte j // 8."""
    return np.packbits(np.asarray(bits).astype(bool), axis=-1, bitorder="little")


def tie_heavy_codes(
    rng: np.random.Generator, n: int, code_bytes: int, n_distinct: int = 3
) -> np.ndarray:
    """n codes drawn from only n_distinct distinct rows, so most distances tie."""
    pool = rng.integers(0, 256, size=(n_distinct, code_bytes), dtype=np.uint8)
    return pool[rng.integers(0, n_distinct, size=n)]


# ---------------------------------------------------------------------------------------
# RBM (deephash/rbm.hpp, rng.hpp): float64 references for the C++ kernels.
# ---------------------------------------------------------------------------------------

__all__ += [
    "cd_step_reference",
    "encode_layers_reference",
    "exact_log_likelihood",
    "joint_log_likelihood_bruteforce",
    "rbm_uniforms_reference",
    "sigmoid",
    "uniform_rank_targets_reference",
]

_MASK64 = (1 << 64) - 1


def _mix64_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int (mod 2**64)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix64_array(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (array arithmetic wraps without warnings)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rbm_uniforms_reference(seed: int, step: int, n: int) -> np.ndarray:
    """The n uniforms of training step `step` (rng.hpp, bit for bit), float32 in [0, 1)."""
    key = _mix64_int(seed ^ _mix64_int(step + 0xD1B54A32D192ED03))
    index = np.arange(n, dtype=np.uint64)
    z = np.full(n, key, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15) * (index + np.uint64(1))
    bits = _mix64_array(z) >> np.uint64(40)
    return (bits.astype(np.float64) / 16777216.0).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float64, stable for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def sigmoid_float32(x: np.ndarray) -> np.ndarray:
    """The kernels' sigmoid, operation for operation in float32 (activation.hpp): the
    argument clamped to [-87, 87], exp by range reduction to n ln 2 + r and a degree-7
    polynomial, then 1 / (1 + exp(-x)). NumPy float32 arithmetic rounds each operation
    once, as the kernels do (they are compiled without FMA contraction)."""
    f = np.float32
    e = np.clip(-np.asarray(x, dtype=f), f(-87.0), f(87.0))
    n = (e * f(1.44269504088896341) + f(128.5)).astype(np.int32) - 128  # t + 128.5 > 0
    fn = n.astype(f)
    r = e - fn * f(0.693359375) + fn * f(2.12194440e-4)
    p = np.full_like(r, f(1.9875691500e-4))
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + f(c)
    p = p * r * r + r + f(1.0)
    scale = ((n + 127).astype(np.int32) << 23).view(f)
    return f(1.0) / (f(1.0) + p * scale)


def uniform_rank_targets_reference(p: np.ndarray) -> np.ndarray:
    """Hashing-regulariser targets: average of the within-row rank quantile
    (rank + 0.5) / n_cols and the within-column rank quantile (rank + 0.5) / n_rows,
    ranks by a stable argsort (ties go to the smaller index)."""
    p = np.asarray(p)
    n_rows, n_cols = p.shape
    row_rank = np.empty(p.shape, dtype=np.int64)
    np.put_along_axis(
        row_rank,
        np.argsort(p, axis=1, kind="stable"),
        np.broadcast_to(np.arange(n_cols), p.shape),
        axis=1,
    )
    col_rank = np.empty(p.shape, dtype=np.int64)
    np.put_along_axis(
        col_rank,
        np.argsort(p, axis=0, kind="stable"),
        np.broadcast_to(np.arange(n_rows)[:, None], p.shape),
        axis=0,
    )
    return 0.5 * ((row_rank + 0.5) / n_cols + (col_rank + 0.5) / n_rows)


def _min_gap(a: np.ndarray, axis: int) -> float:
    """Smallest distance between two entries of the same row (axis=1) or column (axis=0)."""
    if a.shape[axis] < 2:
        return np.inf
    return float(np.diff(np.sort(a, axis=axis), axis=axis).min())


def cd_step_reference(
    components,
    hidden_bias,
    visible_bias,
    components_velocity,
    hidden_velocity,
    visible_velocity,
    V,
    order,
    batch_size,
    learning_rate,
    momentum,
    weight_decay,
    hashing_reg,
    cd_k,
    seed,
    first_step,
    gaussian_visible=False,
):
    """CD-k over the minibatches of `order` exactly as rbm.hpp specifies, in float64.
    With gaussian_visible the reconstruction is the Gaussian mean h W + c (no sigmoid).

    Minibatch b holds rows V[order[b * B:(b + 1) * B]] (B = batch_size); the
    last one may be shorter) and draws its hidden samples from stream first_step + b: the
    sample of row r, unit j at Gibbs step g is uniform[(g * B + r) * n_hidden + j] < p.

    Returns (components, hidden_bias, visible_bias, components_velocity, hidden_velocity,
    visible_velocity, info) as new float64 arrays. info["min_sample_margin"] is the smallest
    |u - p| over all samples drawn and info["min_rank_gap"] the smallest distance between two
    hidden probabilities ranked against each other by the regulariser: where these are tiny
    the float32 kernel may legitimately decide the other way.
    """
    f = lambda a: np.array(a, dtype=np.float64)  # noqa: E731  (copies)
    W, b, c = f(components), f(hidden_bias), f(visible_bias)
    dW, db, dc = f(components_velocity), f(hidden_velocity), f(visible_velocity)
    V = np.asarray(V, dtype=np.float64)
    order = np.asarray(order, dtype=np.int64)
    # The kernel takes the hyper-parameters as float32.
    lr, mom, wd, lam = (
        float(np.float32(x)) for x in (learning_rate, momentum, weight_decay, hashing_reg)
    )
    J = W.shape[0]
    B = batch_size
    info = {"min_sample_margin": np.inf, "min_rank_gap": np.inf, "n_batches": 0}
    for step, row0 in enumerate(range(0, len(order), B)):
        v = V[order[row0 : row0 + B]]
        bs = len(v)
        u = rbm_uniforms_reference(seed, first_step + step, cd_k * B * J).astype(np.float64)

        def sample(p, g):
            uu = u[g * B * J : (g * B + bs) * J].reshape(bs, J)
            info["min_sample_margin"] = min(info["min_sample_margin"], float(np.abs(uu - p).min()))
            return (uu < p).astype(np.float64)

        ph0 = sigmoid(v @ W.T + b)
        h = sample(ph0, 0)
        for g in range(1, cd_k + 1):
            pv = h @ W + c if gaussian_visible else sigmoid(h @ W + c)
            ph = sigmoid(pv @ W.T + b)
            if g < cd_k:
                h = sample(ph, g)
        if lam > 0:
            t = uniform_rank_targets_reference(ph0)
            info["min_rank_gap"] = min(info["min_rank_gap"], _min_gap(ph0, 0), _min_gap(ph0, 1))
        else:
            t = ph0
        pos = (1.0 - lam) * ph0 + lam * t
        dW = mom * dW + lr * (pos.T @ v - ph.T @ pv) / bs - lr * wd * W
        W = W + dW
        db = mom * db + lr * np.mean(ph0 - ph + lam * (t - ph0), axis=0)
        dc = mom * dc + lr * np.mean(v - pv, axis=0)
        b = b + db
        c = c + dc
        info["n_batches"] += 1
    return W, b, c, dW, db, dc, info


def _all_binary_states(n: int) -> np.ndarray:
    """All 2**n binary vectors of length n, (2**n, n) float64."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def exact_log_likelihood(components, hidden_bias, visible_bias, V) -> float:
    """Exact mean log p(v) over the rows of V for a binary RBM with energy
    E(v, h) = -v.c - h.b - h.W v (W = components, n_hidden x n_visible).

    The hidden units are summed out analytically (free energy
    F(v) = -v.c - sum_j log(1 + exp(b_j + W_j.v))) and the partition function enumerates
    all 2**n_visible visible states, so keep n_visible small (<= 16).
    """
    W = np.asarray(components, dtype=np.float64)
    b = np.asarray(hidden_bias, dtype=np.float64)
    c = np.asarray(visible_bias, dtype=np.float64)
    assert W.shape[1] <= 16, "enumerating 2**n_visible states"

    def neg_free_energy(v):
        return v @ c + np.logaddexp(0.0, v @ W.T + b).sum(axis=1)

    log_z = np.logaddexp.reduce(neg_free_energy(_all_binary_states(W.shape[1])))
    return float(np.mean(neg_free_energy(np.asarray(V, dtype=np.float64)) - log_z))


def joint_log_likelihood_bruteforce(components, hidden_bias, visible_bias, V) -> float:
    """exact_log_likelihood by summing exp(-E(v, h)) over every joint state (tiny models)."""
    W = np.asarray(components, dtype=np.float64)
    b = np.asarray(hidden_bias, dtype=np.float64)
    c = np.asarray(visible_bias, dtype=np.float64)
    hs = _all_binary_states(W.shape[0])
    vs = _all_binary_states(W.shape[1])
    neg_energy = (vs @ c)[:, None] + (hs @ b)[None, :] + vs @ W.T @ hs.T  # (n_v states, n_h states)
    log_z = np.logaddexp.reduce(neg_energy, axis=None)
    V = np.asarray(V, dtype=np.float64)
    neg_energy_data = (V @ c)[:, None] + (hs @ b)[None, :] + V @ W.T @ hs.T
    return float(np.mean(np.logaddexp.reduce(neg_energy_data, axis=1) - log_z))


def encode_layers_reference(X, input_thresholds, weights, offsets):
    """Bits of the thresholded encoder in float64: z0 = [X > thresholds] (float32 compare)
    or X; z_l = [z_{l-1} W_l^T - offsets_l > 0].

    Returns (bits of the last layer as uint8 (n, n_out), margin) where margin[r] is the
    smallest |z_{l-1} W_l^T - offsets_l| of row r over all layers: rows with a tiny margin
    may legitimately flip in float32.
    """
    X = np.asarray(X, dtype=np.float32)
    if input_thresholds is not None:
        z = (X > np.asarray(input_thresholds, dtype=np.float32)).astype(np.float64)
    else:
        z = X.astype(np.float64)
    margin = np.full(len(X), np.inf)
    for W, off in zip(weights, offsets):
        a = z @ np.asarray(W, dtype=np.float64).T - np.asarray(off, dtype=np.float64)
        margin = np.minimum(margin, np.abs(a).min(axis=1))
        z = (a > 0).astype(np.float64)
    return z.astype(np.uint8), margin
