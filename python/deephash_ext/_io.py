"""Model and data files: NumPy ``.npz`` archives of plain arrays plus JSON metadata.

No pickle anywhere: archives are written with plain arrays only, and read by one reader
(:func:`read_npz`, :func:`read_npy`) that never hands a file to ``np.load``. Every size in
a file is checked before anything is allocated: the zip directory against the file's
length, each member's ``.npy`` header against the member's size and against what the
caller expects (``expect``), and only then are the arrays read. Anything corrupt, foreign
or inconsistent is a ValueError naming the path.

Writes are atomic (a temporary file in the target directory, flushed to disk, renamed over
the target, then the directory flushed), so a crash or an error never leaves a
half-written file where a good one was.
"""

from __future__ import annotations

import ast
import json
import math
import os
import secrets
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

__all__ = [
    "ArrayHeader",
    "MetaReader",
    "atomic_write",
    "atomic_write_npz",
    "header_mismatch",
    "read_model",
    "read_npy",
    "read_npz",
    "state_expectation",
    "write_model",
]

_META_KEY = "__meta__"
_MAGIC = b"\x93NUMPY"
_MAX_HEADER_BYTES = 10_000  # numpy's own limit for .npy headers
_MAX_NDIM = 32
_MAX_ELEMENTS = 1 << 62  # product of the dimensions (zero dimensions counted as 1)
_DTYPE_KINDS = "biufcSU"  # plain numbers and strings; no objects, records or datetimes
_MAX_MEMBERS = 1 << 16
_MAX_META_BYTES = 1 << 24
# A deflated archive may declare at most this many times its own length in array bytes
# (np.savez stores; deflate of real weights gains ~10 %), or this floor, whichever is more.
_MAX_INFLATION = 64
_INFLATION_FLOOR = 1 << 26
_CHUNK = 1 << 24  # bytes per read when filling an array
# What the zip module and the inflater raise for a damaged or unsupported archive.
_ZIP_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    struct.error,
    zlib.error,
)


# ============================================================================ writing


def _name_target(error: OSError, path: Path) -> OSError:
    """The same kind of OSError, naming ``path`` (not the temporary file)."""
    if error.errno is not None and error.strerror:
        return type(error)(error.errno, error.strerror, os.fspath(path))
    return type(error)(f"cannot write {os.fspath(path)!r}: {error}")


def _sync_directory(directory: Path) -> None:
    """Flush a rename in ``directory`` to disk (best effort: some systems refuse it)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` by calling ``write(handle)`` on a temporary file in the same directory,
    flushed to disk, then renamed over ``path``; the directory is flushed after the rename.

    A new file gets mode 0o666 minus the umask (as ``open`` would); a file that is replaced
    keeps its permission bits. On any failure (including KeyboardInterrupt inside
    ``write``) the temporary file is removed and an existing ``path`` is left as it was.

    Raises
    ------
    OSError
        If the file cannot be written (missing or read-only directory, ``path`` is a
        directory, disk full...); the error names ``path``, never the temporary file.
    """
    path = Path(path)
    # The temporary name is bounded, so a long target name still fits NAME_MAX.
    stem = path.name[:64]
    while True:
        tmp = path.parent / f".{stem}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        except OSError as error:
            raise _name_target(error, path) from None
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                mode = os.stat(path).st_mode
            except OSError:
                mode = None  # no file to replace (or none we can see): the new file's mode
            if mode is not None and stat.S_ISREG(mode):  # permission bits only, no setuid
                os.fchmod(handle.fileno(), stat.S_IMODE(mode) & 0o777)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - the directory became unwritable meanwhile
            pass
        if isinstance(error, OSError):
            raise _name_target(error, path) from None
        raise
    _sync_directory(path.parent)


def atomic_write_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> None:
    """Write ``arrays`` and the JSON-serialisable ``meta`` to ``path`` atomically."""
    if _META_KEY in arrays:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    payload = {name: np.asarray(value) for name, value in arrays.items()}
    for name, value in payload.items():
        if value.dtype == object:
            raise TypeError(
                f"array {name!r} has dtype object, which cannot be saved without pickle"
            )
    payload[_META_KEY] = np.frombuffer(json.dumps(dict(meta)).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda handle: np.savez(handle, **payload))  # type: ignore[arg-type]


def write_model(
    path: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    *,
    format_tag: str,
    version: int,
) -> None:
    """:func:`atomic_write_npz` with the format tag, its version and the library version
    added to ``meta`` (what :func:`read_model` checks)."""
    from ._core import __version__

    atomic_write_npz(
        path,
        arrays,
        {"format": format_tag, "version": version, **meta, "deephash_ext": __version__},
    )


# ============================================================================ .npy members


@dataclass(frozen=True)
class ArrayHeader:
    """What a ``.npy`` header declares: read before any array memory is allocated."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class _Bad(ValueError):
    """A reason a file is unreadable; the reader turns it into a ValueError naming the path."""


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _describe_start(head: bytes) -> str:
    """How a file that is not ``.npy`` starts, for the message."""
    if not head:
        return "it is empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "it is a zip archive (an .npz file?), not a single .npy array"
    text = head[:16]
    printable = all(32 <= b < 127 or b in b"\t\r\n" for b in text)
    looks = " (it looks like text)" if printable else ""
    return f"it starts with {text!r}{looks}, not the .npy magic string"


def _parse_header(text: str) -> ArrayHeader:
    try:
        fields = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise _Bad("its .npy header is not a Python dict literal") from None
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        raise _Bad("its .npy header lacks descr, fortran_order and shape")
    shape, order, descr = fields["shape"], fields["fortran_order"], fields["descr"]
    if (
        not isinstance(shape, tuple)
        or len(shape) > _MAX_NDIM
        or not all(type(d) is int and d >= 0 for d in shape)
        or math.prod(max(d, 1) for d in shape) > _MAX_ELEMENTS
    ):
        raise _Bad(f"its .npy header has an invalid shape {str(shape)[:80]}")
    if not isinstance(order, bool):
        raise _Bad("its .npy header has an invalid fortran_order")
    if not isinstance(descr, str):
        raise _Bad("it holds a record array (a structured dtype), which is not loaded")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError, Warning):
        raise _Bad(f"its .npy header has an invalid dtype {descr[:40]!r}") from None
    if dtype.hasobject:
        raise _Bad(
            "it holds Python objects (dtype object), which are not loaded (they would need pickle)"
        )
    if dtype.kind not in _DTYPE_KINDS or dtype.shape != () or dtype.itemsize == 0:
        raise _Bad(f"it holds an array of dtype {dtype}, which is not loaded")
    return ArrayHeader(tuple(shape), dtype, order)


def _read_header(stream: IO[bytes]) -> tuple[ArrayHeader, int]:
    """The header at the start of ``stream`` and the bytes it took."""
    head = _read_exact(stream, 8)
    if len(head) < 8 or not head.startswith(_MAGIC):
        raise _Bad(_describe_start(head))
    major, minor = head[6], head[7]
    if major not in (1, 2, 3) or minor != 0:
        raise _Bad(f"it has .npy format version {major}.{minor}, which is not known")
    size_bytes = 2 if major == 1 else 4
    raw = _read_exact(stream, size_bytes)
    if len(raw) < size_bytes:
        raise _Bad("it ends inside its .npy header")
    length = int.from_bytes(raw, "little")
    if length > _MAX_HEADER_BYTES:
        raise _Bad(f"its .npy header declares {length} bytes, more than {_MAX_HEADER_BYTES}")
    body = _read_exact(stream, length)
    if len(body) < length:
        raise _Bad("it ends inside its .npy header")
    try:
        text = body.decode("utf-8" if major == 3 else "latin1")
    except UnicodeDecodeError:
        raise _Bad("its .npy header is not text") from None
    return _parse_header(text), 8 + size_bytes + length


def _read_data(stream: IO[bytes], header: ArrayHeader) -> np.ndarray:
    """The array body that follows ``header`` (its size was checked by the caller)."""
    buffer = bytearray(header.nbytes)
    view = memoryview(buffer)
    done = 0
    while done < len(buffer):
        got = stream.readinto(view[done : done + _CHUNK])  # type: ignore[attr-defined]
        if not got:
            raise _Bad(f"it ends after {done} of the {len(buffer)} array bytes its header declares")
        done += got
    array = np.frombuffer(buffer, dtype=header.dtype)
    if header.fortran_order:
        return array.reshape(header.shape[::-1]).transpose()
    return array.reshape(header.shape)


def read_npy(
    path: str | os.PathLike[str],
    *,
    kind: str = ".npy array",
    expect: Callable[[ArrayHeader], None] | None = None,
) -> np.ndarray:
    """Read one ``.npy`` file without pickle, checking its header before allocating.

    Parameters
    ----------
    path : str or PathLike
    kind : str
        What the file should be, for messages.
    expect : callable, optional
        Called with the :class:`ArrayHeader` before the array is read; raises ValueError
        (naming the path) when the file is not what the caller wants.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a ``.npy`` file (say text, ``.fvecs`` or an archive: the message
        says what it starts with), holds Python objects or another unsupported dtype, or
        is shorter than its header declares. The message names the path.
    """
    where = os.fspath(path)
    with open(path, "rb") as handle:
        try:
            header, offset = _read_header(handle)
            available = os.fstat(handle.fileno()).st_size - offset
            if header.nbytes > available:
                raise _Bad(
                    f"its header declares shape {header.shape} of {header.dtype} "
                    f"({header.nbytes} bytes) but only {max(available, 0)} bytes follow"
                )
        except _Bad as error:
            raise ValueError(f"{where!r} is not a readable {kind} file: {error}") from None
        if expect is not None:
            expect(header)
        try:
            return _read_data(handle, header)
        except _Bad as error:
            raise ValueError(f"{where!r} is not a readable {kind} file: {error}") from None


# ============================================================================ .npz archives


def header_mismatch(
    headers: Mapping[str, ArrayHeader],
    expected: Mapping[str, tuple[Sequence[int | None], str | np.dtype]],
) -> str | None:
    """The first way ``headers`` differ from ``expected``, or None when they agree.

    ``expected`` maps every array name to ``(shape, dtype)``: ``None`` in a shape matches
    any length; ``dtype`` is a dtype (matched exactly, native byte order) or a string of
    dtype kinds such as ``"f"``. Names in ``headers`` not in ``expected`` are a mismatch too.
    """
    for name, (shape, dtype) in expected.items():
        header = headers.get(name)
        if header is None:
            return f"array {name!r} is missing"
        if len(header.shape) != len(shape) or any(
            want is not None and want != got for want, got in zip(shape, header.shape)
        ):
            want_text = tuple("any" if s is None else s for s in shape)
            return f"array {name!r} has shape {header.shape}, expected {want_text}"
        ok = (
            header.dtype.kind in dtype
            if isinstance(dtype, str)
            else header.dtype == np.dtype(dtype) and header.dtype.isnative
        )
        if not ok:
            return f"array {name!r} has dtype {header.dtype}, expected {dtype}"
    extra = sorted(set(headers) - set(expected))
    if extra:
        return f"it has unexpected array {extra[0]!r}"
    return None


def state_expectation(
    state: Mapping[str, Any], prefix: str, headers: Mapping[str, ArrayHeader]
) -> dict[str, tuple[Any, ...]]:
    """``{prefix + name: (shape, dtype)}`` for a torch ``state_dict`` (tensors on any device,
    "meta" included), as ``state_dict_to_arrays`` saves it: floating tensors as float32, the
    others in their dtype, 0-d tensors as shape ``(1,)`` (``()`` is accepted too)."""
    expected: dict[str, tuple[Any, ...]] = {}
    for key, value in state.items():
        name = prefix + key
        shape = tuple(value.shape)
        if shape == ():
            found = headers.get(name)
            shape = found.shape if found is not None and found.shape in ((), (1,)) else (1,)
        dtype = (
            np.float32
            if value.is_floating_point()
            else value.new_empty(0, device="cpu").numpy().dtype
        )
        expected[name] = (shape, dtype)
    return expected


def _check_directory(archive: zipfile.ZipFile, length: int) -> dict[str, zipfile.ZipInfo]:
    """Member name (without ``.npy``) to its entry; every size checked against ``length``."""
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise _Bad(f"it has {len(infos)} members")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise _Bad(f"member {info.filename[:80]!r} is not a .npy array")
        name = info.filename[:-4]
        if name in members:
            raise _Bad(f"member {info.filename[:80]!r} appears twice")
        if info.flag_bits & 0x1:
            raise _Bad(f"member {info.filename[:80]!r} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise _Bad(f"member {info.filename[:80]!r} has inconsistent sizes")
        elif info.compress_type != zipfile.ZIP_DEFLATED:
            raise _Bad(
                f"member {info.filename[:80]!r} uses compression method "
                f"{info.compress_type} (only stored and deflate are read)"
            )
        if info.header_offset + info.compress_size > length:
            raise _Bad(f"member {info.filename[:80]!r} lies beyond the end of the file")
        total += info.file_size
        members[name] = info
    limit = max(_MAX_INFLATION * length, _INFLATION_FLOOR)
    if total > limit:
        raise _Bad(
            f"its members declare {total} bytes, more than {limit} for a file of "
            f"{length} bytes (a zip bomb?)"
        )
    return members


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[ArrayHeader, int]:
    with archive.open(info) as stream:
        try:
            header, offset = _read_header(stream)
        except _Bad as error:
            raise _Bad(f"member {info.filename[:80]!r}: {error}") from None
    if offset + header.nbytes != info.file_size:
        raise _Bad(
            f"member {info.filename[:80]!r} declares shape {header.shape} of "
            f"{header.dtype} ({header.nbytes} bytes) in a member of "
            f"{info.file_size - offset} data bytes"
        )
    return header, offset


def _member_data(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: ArrayHeader, offset: int
) -> np.ndarray:
    with archive.open(info) as stream:
        _read_exact(stream, offset)
        try:
            array = _read_data(stream, header)
        except _Bad as error:
            raise _Bad(f"member {info.filename[:80]!r}: {error}") from None
        if stream.read(1):  # also completes the CRC check
            raise _Bad(f"member {info.filename[:80]!r} is longer than its header declares")
    return array


def _decode_meta(array: np.ndarray) -> dict[str, Any]:
    if array.dtype != np.uint8 or array.ndim != 1 or array.size > _MAX_META_BYTES:
        raise _Bad("its metadata entry is not a JSON text")
    try:
        meta = json.loads(array.tobytes().decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        raise _Bad("its metadata entry is not valid JSON") from None
    if not isinstance(meta, dict):
        raise _Bad("its metadata is not a JSON object")
    return meta


Expect = Callable[[dict[str, Any], Mapping[str, ArrayHeader]], None]


def _guarded(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, with what zipfile and zlib raise for a damaged archive as _Bad."""
    try:
        return function(*args)
    except _Bad:
        raise
    except _ZIP_ERRORS as error:
        raise _Bad(
            f"it is not a readable zip archive ({type(error).__name__}: {str(error)[:200]})"
        ) from None


def read_npz(
    path: str | os.PathLike[str],
    *,
    kind: str,
    expect: Expect | None = None,
    finite: bool = False,
    require_meta: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an archive written by :func:`atomic_write_npz` (or ``np.savez`` of plain arrays).

    Order of work: the zip directory (member names, compression, sizes against the file's
    length and a zip-bomb cap), the JSON metadata, every member's ``.npy`` header (dtype,
    shape, size against the member), then ``expect(meta, headers)``, and only then the
    array data.

    Parameters
    ----------
    path : str or PathLike
    kind : str
        What the file should be, for messages ("DeepHash model").
    expect : callable, optional
        ``expect(meta, headers)`` with the metadata dict and ``{name: ArrayHeader}`` (the
        metadata entry excluded), called before any array is read; it raises ValueError
        (naming the path) when the file does not fit what the caller needs.
        :func:`header_mismatch` compares headers with expected shapes and dtypes.
    finite : bool, default=False
        Reject NaN and infinite values in floating-point arrays.
    require_meta : bool, default=True
        Whether a metadata entry must be present (``{}`` is returned when it is absent).

    Returns
    -------
    arrays : dict of str to ndarray
    meta : dict

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not such an archive (corrupt, truncated, foreign, holding pickled
        objects, a zip bomb) or ``expect`` rejects it; the message names the path and says
        what ``kind`` of file was expected.
    """
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"no such file: {where!r}")
    if os.path.isdir(where):
        raise ValueError(f"{where!r} is a directory, not a {kind} file")
    try:
        with open(where, "rb") as handle:
            length = os.fstat(handle.fileno()).st_size
            with _guarded(zipfile.ZipFile, handle) as archive:
                members = _guarded(_check_directory, archive, length)
                meta: dict[str, Any] = {}
                if _META_KEY in members:
                    info = members.pop(_META_KEY)
                    header, offset = _guarded(_member_header, archive, info)
                    if header.nbytes > _MAX_META_BYTES:
                        raise _Bad("its metadata entry is too large")
                    meta = _decode_meta(_guarded(_member_data, archive, info, header, offset))
                elif require_meta:
                    raise _Bad("it has no metadata entry")
                headers = {
                    name: _guarded(_member_header, archive, info) for name, info in members.items()
                }
                if expect is not None:  # its ValueErrors name the path themselves
                    expect(meta, {name: h for name, (h, _) in headers.items()})
                arrays = {
                    name: _guarded(_member_data, archive, members[name], header, offset)
                    for name, (header, offset) in headers.items()
                }
    except _Bad as error:
        raise ValueError(f"{where!r} is not a readable {kind} file: {error}") from None
    if finite:
        for name, array in arrays.items():
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                raise ValueError(
                    f"{where!r} is not a valid {kind} file: array {name!r} "
                    "holds NaN or infinite values"
                )
    return arrays, meta


# ============================================================================ models


class MetaReader:
    """Typed, range-checked access to a model file's metadata; ValueError naming the path.

    Every accessor takes the key and an optional ``default`` returned when the key is
    absent (without one, a missing key is an incomplete file).
    """

    _MISSING = object()

    def __init__(self, meta: Mapping[str, Any], where: str, kind: str) -> None:
        self.meta, self.where, self.kind = meta, where, kind

    def _get(self, key: str, default: Any) -> Any:
        if key in self.meta:
            return self.meta[key]
        if default is self._MISSING:
            raise ValueError(
                f"{self.where!r} is an incomplete {self.kind} model file: its "
                f"metadata has no {key!r}"
            )
        return default

    def invalid(self, key: str, rule: str, value: Any) -> ValueError:
        text = repr(value)
        text = text if len(text) <= 80 else text[:77] + "..."
        return ValueError(
            f"{self.where!r} is not a valid {self.kind} model file: metadata "
            f"{key!r} must be {rule}, got {text}"
        )

    def integer(self, key: str, *, minimum: int, maximum: int, default: Any = _MISSING) -> int:
        value = self._get(key, default)
        if type(value) is not int or not minimum <= value <= maximum:
            raise self.invalid(key, f"an integer in [{minimum}, {maximum}]", value)
        return value

    def integers(
        self, key: str, *, minimum: int, maximum: int, max_len: int, default: Any = _MISSING
    ) -> list[int]:
        value = self._get(key, default)
        if (
            not isinstance(value, list)
            or len(value) > max_len
            or not all(type(v) is int and minimum <= v <= maximum for v in value)
        ):
            raise self.invalid(
                key, f"a list of at most {max_len} integers in [{minimum}, {maximum}]", value
            )
        return list(value)

    def boolean(self, key: str, *, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.invalid(key, "true or false", value)
        return value

    def reals(self, key: str, *, nonnegative: bool = False, default: Any = _MISSING) -> list[float]:
        value = self._get(key, default)
        if not isinstance(value, list) or not all(
            type(v) in (int, float) and math.isfinite(v) and (v >= 0 or not nonnegative)
            for v in value
        ):
            rule = "finite numbers >= 0" if nonnegative else "finite numbers"
            raise self.invalid(key, f"a list of {rule}", value)
        return [float(v) for v in value]

    def string(self, key: str, *, default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise self.invalid(key, "a string", value)
        return value

    def check_seed_and_verbose(self, params: Mapping[str, Any]) -> None:
        """The ``random_state`` (null or a seed) and ``verbose`` (a bool) of saved params."""
        seed = params.get("random_state")
        if seed is not None and not (type(seed) is int and 0 <= seed < 2**32):
            raise self.invalid("params.random_state", "null or an integer in [0, 2**32)", seed)
        if not isinstance(params.get("verbose", False), bool):
            raise self.invalid("params.verbose", "true or false", params["verbose"])

    def mapping(self, key: str, *, default: Any = _MISSING) -> dict[str, Any]:
        value = self._get(key, default)
        if not isinstance(value, dict):
            raise self.invalid(key, "a JSON object", value)
        return dict(value)


def read_model(
    path: str | os.PathLike[str],
    *,
    kind: str,
    format_tag: str,
    version: int,
    article: str = "a",
    expect: Expect | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`write_model`: check its format tag and version, then
    ``expect(meta, headers)`` (see :func:`read_npz`), then read the arrays, which must be
    finite.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        As :func:`read_npz`, and if the file is not ``article kind`` model file or has
        another format version (the message names the path).
    """
    where = os.fspath(path)

    def check(meta: dict[str, Any], headers: Mapping[str, ArrayHeader]) -> None:
        if meta.get("format") != format_tag:
            found = repr(meta.get("format"))
            raise ValueError(f"{where!r} is not {article} {kind} model file (format {found[:80]})")
        found_version = meta.get("version")
        if type(found_version) is not int or found_version != version:
            raise ValueError(
                f"{where!r} has {kind} format version {str(found_version)[:40]}; "
                f"this deephash_ext reads version {version}"
            )
        if expect is not None:
            expect(meta, headers)

    return read_npz(path, kind=f"{kind} model", expect=check, finite=True)
