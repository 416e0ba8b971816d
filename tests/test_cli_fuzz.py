"""Fuzz the ``deephash`` command line (issue 12): deterministic random argument vectors and
corrupted input files through :func:`deephash_ext.cli.main`.

Every run must end in one of three ways: exit 0; a usage error (``SystemExit(2)`` with
argparse's message, last line ``deephash ...: error: ...``); or exit 1 with exactly one
non-empty stderr line ``deephash: error: ...``. Never an uncaught exception or a traceback,
and a failed command leaves no output file (nor a temporary one) behind.

Inputs are tiny (24 x 16 descriptors, 2-byte codes, a one-layer model) and every value that
the library accepts is cheap (at most 2 epochs, small networks), so the whole run is quick.
"""

from __future__ import annotations

import io
import os
import random
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from deephash_ext import DeepHash
from deephash_ext.cli import main

N_CASES = 400
SEED = 20261201

# Exceptions tolerated for a command given a corrupt model file. Empty: the model-file
# reader turns every corrupt zip into a ValueError naming the path.
LIBRARY_PENDING: tuple[type[BaseException], ...] = ()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _with_header(header: str, data: bytes, version: int = 1) -> bytes:
    """A .npy file with a hand-written header (padded to 64 bytes) and raw data."""
    size_bytes = 2 if version == 1 else 4
    text = header.encode("latin1")
    text += b" " * (-(10 + size_bytes - 8 + len(text) + 1) % 64) + b"\n"
    size = len(text).to_bytes(size_bytes, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + data


def _mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    """``count`` corruptions of ``data``: flipped bits, overwritten bytes, truncations."""
    out = []
    for i in range(count):
        b = bytearray(data)
        if i % 3 == 0:
            for _ in range(rng.randint(1, 4)):
                j = rng.randrange(len(b))
                b[j] ^= 1 << rng.randrange(8)
        elif i % 3 == 1:
            # Mostly in the header, where the sizes live.
            j = rng.randrange(min(len(b), 128))
            b[j] = rng.randrange(256)
        else:
            b = b[: rng.randrange(len(b))]
        out.append(bytes(b))
    return out


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Named lists of paths: good and bad descriptors, models, codes, and output targets."""
    root = tmp_path_factory.mktemp("cli_fuzz")
    rng = random.Random(SEED)
    nprng = np.random.default_rng(SEED)
    counter = iter(range(10**6))

    def put(content: bytes, suffix: str) -> str:
        path = root / f"f{next(counter)}{suffix}"
        path.write_bytes(content)
        return str(path)

    X = nprng.normal(size=(24, 16)).astype(np.float32)
    from deephash_ext.datasets import save_fvecs

    save_fvecs(root / "X.fvecs", X)
    good_x = [put(_npy_bytes(X), ".npy"), str(root / "X.fvecs")]

    bad_arrays = [
        X.astype(np.int32),
        X.astype(np.complex64),
        X > 0,
        X.astype(np.float16),
        np.float32(1.5),
        np.zeros((0, 16), np.float32),
        np.zeros((16, 0), np.float32),
        np.zeros((0, 0), np.float32),
        np.full((24, 16), np.nan, np.float32),
        np.full((24, 16), np.inf, np.float32),
        X[0],
        X.reshape(24, 4, 4),
        np.asfortranarray(X),
        np.zeros(4, dtype=[("a", "<f4")]),
        np.array([None, 1], dtype=object),
        X.astype(np.float64),
        X[:, :8],
        X[:1],
        np.zeros((24, 16), np.uint8),
    ]
    bad_x = [put(_npy_bytes(a), ".npy") for a in bad_arrays]
    npy = _npy_bytes(X)
    bad_x += [put(m, ".npy") for m in _mutations(npy, rng, 24)]
    bad_x += [
        put(b"", ".npy"),
        put(b"1 2 3\n4 5 6\n", ".npy"),
        put(bytes(range(256)), ".npy"),
        put(
            _with_header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (10**15, 16), }", bytes(64)
            ),
            ".npy",
        ),
        put(
            _with_header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000000, 16), }",
                bytes(64),
            ),
            ".npy",
        ),
        put(
            _with_header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 16), }", bytes(64)
            ),
            ".npy",
        ),
        put(
            _with_header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 16), }" + " " * 20000,
                bytes(256),
                version=2,
            ),
            ".npy",
        ),
        put(struct.pack("<i", 16) + bytes(30), ".fvecs"),
        put(struct.pack("<i", -5), ".fvecs"),
        put(struct.pack("<i", 2**31 - 1) + bytes(8), ".fvecs"),
        put(b"\x01\x02", ".fvecs"),
        put(npy, ".txt"),
        str(root),
        str(root / "missing.npy"),
    ]

    model_path = root / "model.npz"
    DeepHash((8,), n_epochs=1, learning_rate=0.01, random_state=0).fit(X).save(model_path)
    model = model_path.read_bytes()
    good_model = [str(model_path)]
    bad_model = [put(m, ".npz") for m in _mutations(model, rng, 18)]
    directory = bytearray(model)
    at = directory.find(b"PK\x01\x02")
    directory[at + 10 : at + 12] = struct.pack("<H", 99)  # unknown compression method
    bad_model += [
        put(bytes(directory), ".npz"),
        put(b"", ".npz"),
        put(npy, ".npz"),
        good_x[0],
        str(root / "missing.npz"),
        str(root),
    ]
    with zipfile.ZipFile(model_path) as source:
        members = {name: source.read(name) for name in source.namelist()}
    huge = dict(members)
    huge["components_0.npy"] = _with_header(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000000, 16), }", bytes(64)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name, payload in huge.items():
            target.writestr(name, payload)
    bad_model.append(put(buffer.getvalue(), ".npz"))

    db = nprng.integers(0, 256, size=(40, 2), dtype=np.uint8)
    good_codes = [
        put(_npy_bytes(db), ".npy"),
        put(_npy_bytes(db[:5]), ".npy"),
        put(_npy_bytes(db[7]), ".npy"),
    ]
    bad_codes = [
        put(_npy_bytes(a), ".npy")
        for a in (
            db.astype(np.float32),
            np.uint8(3),
            np.zeros((0, 2), np.uint8),
            np.zeros((3, 0), np.uint8),
            db.reshape(40, 1, 2),
            db[:, :1],
            db.astype(np.int8),
            db > 0,
            np.zeros((2, 3), np.uint16),
            np.asfortranarray(db),
        )
    ]
    codes = _npy_bytes(db)
    bad_codes += [put(m, ".npy") for m in _mutations(codes, rng, 18)]
    bad_codes += bad_x[-8:]

    read_only = root / "read_only.out"
    read_only.write_bytes(b"keep")
    read_only.chmod(0o444)
    folder = root / "a_folder"
    folder.mkdir()
    bad_out = [str(read_only), str(folder), str(root / "no" / "such" / "out.npy"), ""]
    return {
        "good_x": good_x,
        "bad_x": bad_x,
        "good_model": good_model,
        "bad_model": bad_model,
        "good_codes": good_codes,
        "bad_codes": bad_codes,
        "bad_out": bad_out,
        "root": [str(root)],
    }


# Option values: cheap valid ones, invalid ones, huge ones.
INTS = ["0", "1", "2", "-1", "x", "1.5", "", "99999999999999999999"]
VALUES = {
    "--layers": [
        "8",
        "16,8",
        "8,8",
        "24",
        "7",
        "0",
        "-8",
        "",
        ",",
        "8,,8",
        "x",
        "1e3",
        str(2**61),
        f"8,{2**61}",
        "4294967296",
    ],
    "--epochs": ["1", "2", "0", "-1", "x", "1.5", ""],
    "--learning-rate": ["0.01", "0.1", "0", "-1", "nan", "inf", "x"],
    "--hashing-reg": ["0", "0.2", "-1", "nan", "x"],
    "--seed": ["0", "3", "-1", "x", "99999999999999999999"],
    "--layer": ["0", "-1", "1", "-2", "5", "x", "99999999999999999999"],
    "-k": ["1", "3", "10", "40", "41", "0", "-1", "x", "99999999999999999999"],
    "--n": ["10", "100", "2000", "5", "x", "-3", str(10**15)],
    "--bits": ["8", "64", "60", "0", "-8", "x", "2048"],
    "--queries": ["1", "5", "10", "0", "101", "x"],
    "--max-flips": ["0", "2", "8", "-1", "100", "x"],
}


def _pick(rng: random.Random, good: list[str], bad: list[str], p_good: float) -> str:
    return rng.choice(good) if rng.random() < p_good else rng.choice(bad)


def _options(rng: random.Random, names: list[str]) -> list[str]:
    argv: list[str] = []
    for name in names:
        if rng.random() < 0.4:
            argv += [name, rng.choice(VALUES[name])]
    return argv


def _case(rng: random.Random, pool: dict[str, list[str]], index: int) -> tuple[list[str], str]:
    """One argument vector and the fresh output path it may write (or "")."""
    fresh = os.path.join(pool["root"][0], "out", f"case{index}.out")
    out = fresh if rng.random() < 0.75 else rng.choice(pool["bad_out"])
    command = rng.choices(
        ["fit", "encode", "search", "search-demo", "other"], weights=[30, 25, 30, 10, 5]
    )[0]
    if command == "fit":
        argv = ["fit", _pick(rng, pool["good_x"], pool["bad_x"], 0.5), out]
        if rng.random() < 0.8:  # the default network (4096, 256) is fine, only slower
            argv += ["--layers", rng.choice(VALUES["--layers"])]
        argv += ["--epochs", rng.choice(VALUES["--epochs"][:3])]
        argv += _options(rng, ["--epochs", "--learning-rate", "--hashing-reg", "--seed"])
        argv += ["--quiet"] if rng.random() < 0.9 else []
    elif command == "encode":
        argv = [
            "encode",
            _pick(rng, pool["good_model"], pool["bad_model"], 0.5),
            _pick(rng, pool["good_x"], pool["bad_x"], 0.5),
            out,
        ]
        argv += _options(rng, ["--layer"])
    elif command == "search":
        argv = [
            "search",
            _pick(rng, pool["good_codes"][:1], pool["bad_codes"], 0.6),
            _pick(rng, pool["good_codes"], pool["bad_codes"], 0.6),
        ]
        argv += _options(rng, ["-k"])
        if rng.random() < 0.5:
            argv += ["--output", out]
        else:
            out = ""
    elif command == "search-demo":
        argv = ["search-demo", "--n", "200", "--bits", "64", "--queries", "5"]
        argv += _options(rng, ["--n", "--bits", "--queries", "--max-flips", "--seed"])
        out = ""
    else:
        argv = rng.choice(
            [
                [],
                ["nope"],
                ["fit"],
                ["encode", "a"],
                ["search", "-k"],
                ["--version"],
                ["fit", "--layers"],
                ["search", "a", "b", "-q"],
                ["demo", "--bits", "60"],
                ["demo", "--scale", "x"],
                ["demo", "--out", pool["bad_x"][0], "--quiet"],
            ]
        )
        out = ""
    # Stray flags and numbers, now and then.
    if rng.random() < 0.05:
        argv.insert(rng.randrange(len(argv) + 1), rng.choice(["--", "-", "--quiet", *INTS]))
    return argv, out


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str, str, str]:
    """main's return value, or "exit 0" / "exit 2" when argparse stopped it."""
    with warnings.catch_warnings():
        # A warning would be printed to stderr in real use: make it fail the case instead.
        warnings.simplefilter("error")
        status: int | str
        try:
            status = main(argv)
        except SystemExit as stop:
            status = f"exit {stop.code}"
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _reads_pending_model(argv: list[str], pool: dict[str, list[str]]) -> bool:
    return any(a in pool["bad_model"] for a in argv)


def test_cli_fuzz(
    pool: dict[str, list[str]], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from deephash_ext import datasets

    def no_demo(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo started its work: --out was not checked first")

    monkeypatch.setattr(datasets, "load_retrieval_benchmark", no_demo)  # never runs the demo
    rng = random.Random(SEED)
    os.makedirs(os.path.join(pool["root"][0], "out"))
    outcomes = {"ok": 0, "error": 0, "usage": 0, "pending": 0}
    failures = []
    read_only = pool["bad_out"][0]
    for index in range(N_CASES):
        argv, out = _case(rng, pool, index)
        try:
            status, stdout, stderr = _run(argv, capsys)
        except LIBRARY_PENDING as error:
            capsys.readouterr()
            if not _reads_pending_model(argv, pool):
                failures.append((argv, f"uncaught {type(error).__name__}: {error}"))
            outcomes["pending"] += 1
            continue
        except Exception as error:  # anything else escaping main is a failure
            capsys.readouterr()
            failures.append((argv, f"uncaught {type(error).__name__}: {error}"))
            continue
        problem = _check(argv, status, stdout, stderr)
        succeeded = status in (0, "exit 0")
        if not succeeded and out and out not in pool["bad_out"] and os.path.exists(out):
            problem = problem or f"a failed command left {out}"
        if problem:
            failures.append((argv, problem))
        outcomes["ok" if succeeded else "usage" if status == "exit 2" else "error"] += 1
    leftovers = [
        n for n in os.listdir(os.path.join(pool["root"][0], "out")) if n.startswith(".")
    ] + [n for n in os.listdir(pool["root"][0]) if n.endswith(".tmp")]
    assert not failures, f"{len(failures)} of {N_CASES} runs failed:\n" + "\n".join(
        f"{argv}: {problem}" for argv, problem in failures[:20]
    )
    assert not leftovers, leftovers
    assert Path(read_only).read_bytes() == b"keep"
    # The fuzz reaches every outcome, so it exercises what it claims to.
    assert min(outcomes["ok"], outcomes["error"], outcomes["usage"]) >= 20, outcomes


def _check(argv: list[str], status: int | str, stdout: str, stderr: str) -> str | None:
    """What is wrong with one run, or None."""
    if "Traceback" in stdout + stderr:
        return "traceback"
    lines = [line for line in stderr.splitlines() if line.strip()]
    if status in (0, "exit 0"):
        return None
    if status == "exit 2":  # argparse: usage line(s), then "deephash ...: error: ..."
        if not (
            stderr.startswith("usage: deephash")
            and lines[-1].startswith("deephash")
            and ": error: " in lines[-1]
        ):
            return f"usage error without argparse's message: {stderr!r}"
        return None
    if status != 1:
        return f"exit status {status!r}"
    if len(lines) != 1 or not lines[0].startswith("deephash: error: "):
        return f"not one error line: {stderr!r}"
    return None
