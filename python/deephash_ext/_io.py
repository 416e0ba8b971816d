"""Model and data files: NumPy ``.npz`` archives of plain arrays plus JSON metadata.

No pickle anywhere: archives are written with plain arrays only and read with
``allow_pickle=False``. Writes are atomic (a temporary file in the target directory,
flushed to disk, then renamed over the target), so a crash or an error never leaves a
half-written file where a good one was.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["atomic_write_npz", "read_npz"]

_META_KEY = "__meta__"


def atomic_write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                     meta: Mapping[str, Any]) -> None:
    """Write ``arrays`` and the JSON-serialisable ``meta`` to ``path`` atomically."""
    path = os.fspath(path)
    if _META_KEY in arrays:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in payload.items():
        if value.dtype == object:
            raise TypeError(
                f"array {name!r} has dtype object, which cannot be saved without pickle")
    payload[_META_KEY] = np.frombuffer(json.dumps(dict(meta)).encode("utf-8"), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_npz(path: str | os.PathLike, *, kind: str) -> tuple[dict[str, np.ndarray], dict]:
    """Read an archive written by :func:`atomic_write_npz`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not such an archive (corrupt, truncated, foreign, or holding pickled
        objects); the message names the path and says what ``kind`` of file was expected.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    try:
        # Our own handle, so the file is closed even when numpy fails before owning it.
        with open(path, "rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an .npz archive")
            with loaded as archive:
                arrays = {name: archive[name] for name in archive.files}
        if _META_KEY not in arrays:
            raise ValueError("it has no metadata entry")
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
            UnicodeDecodeError) as error:
        raise ValueError(f"{path!r} is not a readable {kind} file: {error}") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{path!r} is not a {kind} file: its metadata is not a JSON object")
    return arrays, meta
