"""Model and data files: NumPy ``.npz`` archives of plain arrays plus JSON metadata.

No pickle anywhere: archives are written with plain arrays only and read with
``allow_pickle=False``. Writes are atomic (a temporary file in the target directory,
flushed to disk, then renamed over the target), so a crash or an error never leaves a
half-written file where a good one was.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["atomic_write", "atomic_write_npz", "read_model", "read_npz", "write_model"]

_META_KEY = "__meta__"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` by calling ``write(handle)`` on a temporary file in the same directory,
    flushed to disk, then renamed over ``path``; the temporary file is removed on failure.

    It is created with mode 0o666 minus the umask (as ``open`` would), so the final file has
    the usual permissions.
    """
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                     meta: Mapping[str, Any]) -> None:
    """Write ``arrays`` and the JSON-serialisable ``meta`` to ``path`` atomically."""
    if _META_KEY in arrays:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in payload.items():
        if value.dtype == object:
            raise TypeError(
                f"array {name!r} has dtype object, which cannot be saved without pickle")
    payload[_META_KEY] = np.frombuffer(json.dumps(dict(meta)).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda handle: np.savez(handle, **payload))


def write_model(path: str | os.PathLike, arrays: Mapping[str, np.ndarray],
                meta: Mapping[str, Any], *, format_tag: str, version: int) -> None:
    """:func:`atomic_write_npz` with the format tag, its version and the library version
    added to ``meta`` (what :func:`read_model` checks)."""
    from ._core import __version__
    atomic_write_npz(path, arrays, {"format": format_tag, "version": version, **meta,
                                    "deephash_ext": __version__})


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


def read_model(path: str | os.PathLike, *, kind: str, format_tag: str, version: int,
               article: str = "a") -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by :func:`write_model` and check its format tag and version.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        As :func:`read_npz`, and if the file is not ``article kind`` model file or has
        another format version (the message names the path).
    """
    arrays, meta = read_npz(path, kind=f"{kind} model")
    where = os.fspath(path)
    if meta.get("format") != format_tag:
        raise ValueError(f"{where!r} is not {article} {kind} model file (format "
                         f"{meta.get('format')!r})")
    if meta.get("version") != version:
        raise ValueError(f"{where!r} has {kind} format version {meta.get('version')!r}; "
                         f"this deephash_ext reads version {version}")
    return arrays, meta
