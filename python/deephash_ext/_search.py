"""Exact Hamming search over packed codes, on the CPU or a CUDA GPU.

Both functions scan every code (no approximation) and rank by (distance, index): ties go
to the smaller index, so results are deterministic, the top-k for a smaller k is a prefix
of the top-k for a larger k, and the GPU returns exactly what the CPU returns. The GIL is
released while the kernels run.

Checks live where they can be expressed once: this module converts arguments (dtype, 1-D
queries, row layout); the compiled modules check integer arguments, and the kernels check
``k``, the radius and the code widths (the GPU's limits are attributes of ``_cuda``).
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._gpu import cuda_module, resolve_device
from ._validation import check_codes, check_int, check_queries

__all__ = ["GpuCodes", "range_search", "search"]


class GpuCodes:
    """A database of packed codes kept in GPU memory across searches.

    The codes are copied once; :meth:`search` and :meth:`range_search` (or
    :func:`deephash_ext.search` given this object) then only send the queries. Results
    are bit-identical to the CPU search. The GPU memory is freed with the object.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes)
        ``n >= 1`` and ``1 <= code_bytes <= 1024``. Row-contiguous views are read in place.
    device_id : int, default 0
        The CUDA device.

    Raises
    ------
    RuntimeError
        If CUDA cannot be used (see :func:`deephash_ext.cuda_unavailable_reason`).
    TypeError
        If ``codes`` is not uint8 or ``device_id`` not an integer.
    ValueError
        If ``codes`` has no rows, more than 1024 bytes per code, or ``device_id`` is not a
        visible device.
    MemoryError
        If the codes do not fit in GPU memory.

    Examples
    --------
    >>> import deephash_ext
    >>> if deephash_ext.cuda_available():  # doctest: +SKIP
    ...     index = deephash_ext.GpuCodes(codes)
    ...     distances, indices = index.search(queries, k=10)
    """

    def __init__(self, codes: object, device_id: int = 0) -> None:
        module = cuda_module()
        db = check_codes(codes, "codes")
        device_id = check_int(device_id, "device_id", minimum=0)
        # rows and width are checked against the GPU kernels' limits by DeviceCodes
        self._handle = module.DeviceCodes(db, device_id)

    @property
    def n(self) -> int:
        """Number of codes."""
        return int(self._handle.n)

    @property
    def code_bytes(self) -> int:
        """Bytes per code."""
        return int(self._handle.code_bytes)

    @property
    def device_id(self) -> int:
        """The CUDA device holding the codes."""
        return int(self._handle.device)

    @property
    def nbytes(self) -> int:
        """GPU memory held (codes padded to whole 64-bit words)."""
        return int(self._handle.nbytes)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"GpuCodes(n={self.n}, code_bytes={self.code_bytes}, device_id={self.device_id})"

    def search(self, queries: object, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest codes; the contract of :func:`deephash_ext.search`."""
        return search(self, queries, k)

    def range_search(
        self, queries: object, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within a radius; the contract of :func:`deephash_ext.range_search`."""
        return range_search(self, queries, max_distance)


def _database(codes: object, device: object) -> tuple[np.ndarray | GpuCodes, bool]:
    """(codes, whether the call runs on the GPU). An array is uploaded by
    :func:`_on_gpu` after the Python-side checks; ``k`` and the widths are checked by the
    kernels (so a bad ``k`` with ``device="cuda"`` fails after the upload, changing nothing)."""
    if isinstance(codes, GpuCodes):
        if device is not None and resolve_device(device) != "cuda":
            raise ValueError(
                "codes are a GpuCodes (on the GPU) but device='cpu'; search the "
                "NumPy array on the CPU instead"
            )
        return codes, True
    db = check_codes(codes, "codes")
    where = "cpu" if device is None else resolve_device(device)
    if (
        where == "cuda"
        and device == "auto"
        and (db.shape[0] == 0 or db.shape[1] > cuda_module().max_code_bytes)
    ):
        where = "cpu"  # "auto" takes the CPU for what the GPU kernels do not cover
    return db, where == "cuda"


def _on_gpu(db: np.ndarray | GpuCodes) -> GpuCodes:
    return db if isinstance(db, GpuCodes) else GpuCodes(db)


def search(
    codes: object, queries: object, k: int, *, device: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest codes by Hamming distance.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes), or GpuCodes
        The database, packed as in :mod:`deephash_ext.codes`. Row-contiguous views (for
        example ``codes[1000:]`` or ``codes[:, :8]``) are searched in place; other layouts
        are copied once. A :class:`GpuCodes` is searched on its GPU.
    queries : ndarray of uint8, shape (nq, code_bytes) or (code_bytes,)
        A 1-D array is one query, and the results are then 1-D of shape (k,).
    k : int
        Neighbours per query, ``1 <= k <= n``. There is no other cap, on the GPU either.
    device : {"cpu", "cuda", "auto"}, optional
        Where to search. The default is where ``codes`` live (the CPU for an array).
        ``"cuda"`` copies an array to the GPU for this call (keep a :class:`GpuCodes` to
        search it repeatedly); ``"auto"`` uses the GPU when available and the codes have at
        most 1024 bytes, else the CPU. Results are the same on every device.

    Returns
    -------
    distances : ndarray of int32, shape (nq, k)
        Sorted ascending.
    indices : ndarray of int64, shape (nq, k)
        Row numbers in ``codes``; equal distances are ordered by index.

    Raises
    ------
    TypeError
        If ``codes`` or ``queries`` is not uint8 (codes are never cast), ``k`` is not an
        integer, or ``device`` is not a string.
    ValueError
        If ``codes`` is not 2-D or has no bytes per code, ``queries`` is not 1-D or 2-D or
        differs in width, ``k`` is outside ``[1, n]``, ``device`` is not a known name, or
        ``device="cpu"`` is given a :class:`GpuCodes`.
    RuntimeError
        If ``device="cuda"`` and CUDA cannot be used (the message says why).

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([[0b0000], [0b0111], [0b0001], [0b0011]], dtype=np.uint8)
    >>> search(codes, np.array([0b0001], dtype=np.uint8), k=3)
    (array([0, 1, 1], dtype=int32), array([2, 0, 3]))
    """
    db, on_gpu = _database(codes, device)
    q, single = check_queries(queries)
    if on_gpu:
        distances, indices = _on_gpu(db)._handle.search(q, k)
    else:
        assert isinstance(db, np.ndarray)  # for mypy: only GpuCodes run on the GPU
        distances, indices = _core.knn_hamming(db, q, k)
    return (distances[0], indices[0]) if single else (distances, indices)


def range_search(
    codes: object, queries: object, max_distance: int, *, device: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every code within a Hamming radius (inclusive) of each query.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, code_bytes), or GpuCodes
    queries : ndarray of uint8, shape (nq, code_bytes) or (code_bytes,)
        A 1-D array is one query (``nq = 1``); the result has the same form.
    max_distance : int
        Radius, ``>= 0``: a code is returned iff its distance is ``<= max_distance``.
    device : {"cpu", "cuda", "auto"}, optional
        As in :func:`search`.

    Returns
    -------
    lims : ndarray of int64, shape (nq + 1,)
        Query ``i``'s results are ``distances[lims[i]:lims[i + 1]]`` and
        ``indices[lims[i]:lims[i + 1]]`` (the faiss ``range_search`` layout).
    distances : ndarray of int32, shape (lims[-1],)
    indices : ndarray of int64, shape (lims[-1],)
        Each query's results are sorted by (distance, index).

    Raises
    ------
    TypeError
        If ``codes`` or ``queries`` is not uint8, or ``max_distance`` is not an integer.
    ValueError
        For wrong shapes or widths (as :func:`search`), or ``max_distance < 0``.
    RuntimeError
        If ``device="cuda"`` and CUDA cannot be used.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([[0b0000], [0b0111], [0b0001], [0b0011]], dtype=np.uint8)
    >>> range_search(codes, np.array([[0b0001]], dtype=np.uint8), max_distance=1)
    (array([0, 3]), array([0, 1, 1], dtype=int32), array([2, 0, 3]))
    """
    db, on_gpu = _database(codes, device)
    q, _ = check_queries(queries)
    # The kernels check max_distance >= 0; any radius above the code's bits means all codes.
    if on_gpu:
        return _on_gpu(db)._handle.range_search(q, max_distance)
    assert isinstance(db, np.ndarray)  # for mypy: only GpuCodes run on the GPU
    return _core.range_hamming(db, q, max_distance)
