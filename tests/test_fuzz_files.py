"""Fuzzing the file readers: thousands of mutated model and descriptor files.

Each mutated file must either load into a model that encodes, or raise exactly ValueError
naming the path; no other exception type (MemoryError, RuntimeError, IndexError,
NotImplementedError...) may escape. Mutations are drawn from fixed seeds: byte flips
(anywhere, or in the zip headers), truncations, metadata edits (wrong types, huge or
negative sizes, NaN, missing keys), member drops, duplicates, swaps and replacements
(other dtypes and shapes, NaN, pickled objects, forged headers), and zip-bomb members.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import numpy as np
import pytest
from deephash_ext import DeepHash
from deephash_ext.datasets import load_descriptors, save_fvecs
from npz_tools import (
    META,
    central_entries,
    meta_of,
    npy_bytes,
    npy_header,
    read_members,
    with_meta,
    write_members,
    write_with_bomb,
)

torch = pytest.importorskip("torch")
from deephash_ext import DRHN, SSDH  # noqa: E402

N_MUTATIONS = {"DeepHash": 1500, "SSDH": 1200, "DRHN": 800}

WEIRD_VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    3,
    7,
    8,
    9,
    16,
    2**31,
    2**63,
    10**30,
    -(10**9),
    0.5,
    -0.0,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "x",
    "cpu",
    "auto",
    "identity",
    [],
    [0],
    [1],
    [8],
    [8, 8],
    [-8],
    [10**12],
    [[1]],
    [None],
    {},
    {"a": 1},
    "SSDH",
    "DLBHC",
    "deephash_ext.DeepHash",
    "deephash_ext.SSDH",
    "deephash_ext.DRHN",
]
DTYPES = ["<f4", "<f8", ">f4", "<i8", "|u1", "<U3", "|b1", "<c8"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(90, 24)).astype(np.float32)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 4)
    return rng.random((12, 32, 32), dtype=np.float32) + labels[:, None, None], labels


@pytest.fixture(scope="module")
def models(X, images):
    y = np.repeat([0, 1, 2], 30)
    deephash = DeepHash((16, 8), n_epochs=1, learning_rate=0.05, batch_size=30, random_state=0).fit(
        X
    )
    deephash_tuned = DeepHash((8,), n_epochs=1, random_state=0).fit(X)
    deephash_tuned.finetune(X, np.array([[0, 1], [2, 3], [4, 5]]), n_epochs=1)
    return {
        "DeepHash": (DeepHash, [deephash, deephash_tuned], X[:3]),
        "SSDH": (
            SSDH,
            [
                SSDH(
                    n_bits=8, hidden_layer_sizes=(8,), n_epochs=1, batch_size=30, random_state=0
                ).fit(X, y),
                SSDH(
                    n_bits=12, hidden_layer_sizes=(), n_epochs=1, batch_size=30, random_state=0
                ).fit(X, np.eye(3, dtype=np.float32)[y]),
            ],
            X[:3],
        ),
        "DRHN": (
            DRHN,
            [DRHN(n_bits=8, widths=(2, 4), n_epochs=1, batch_size=6, random_state=0).fit(*images)],
            images[0][:2],
        ),
    }


# ============================================================================ mutations


def _paths(value, prefix=()):
    """Every (key path) inside a JSON value, the value itself included."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _edit_meta(meta, rng):
    paths = [p for p in _paths(meta) if p]
    path = paths[rng.integers(len(paths))]
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    key, action = path[-1], rng.integers(5)
    old = parent[key]
    if action == 0 and isinstance(parent, dict):
        del parent[key]
    elif action == 1 and type(old) is int:
        parent[key] = int(old * [2, -1, 0][rng.integers(3)] + rng.integers(-2, 3))
    elif action == 2 and isinstance(old, list):
        old.append(
            WEIRD_VALUES[rng.integers(len(WEIRD_VALUES))]
            if old == [] or rng.random() < 0.5
            else old[0]
        )
    else:
        parent[key] = json.loads(json.dumps(WEIRD_VALUES[rng.integers(len(WEIRD_VALUES))]))
    return meta


def _random_member_bytes(rng) -> bytes:
    choice = rng.integers(6)
    if choice == 0:
        dtype = DTYPES[rng.integers(len(DTYPES))]
        shape = tuple(int(s) for s in rng.integers(0, 5, size=rng.integers(0, 4)))
        return npy_bytes(np.zeros(shape, dtype=dtype))
    if choice == 1:
        return npy_bytes(np.full((rng.integers(1, 20),), np.nan, np.float32))
    if choice == 2:
        return npy_bytes(np.array([{"x": 1}, None], dtype=object))
    if choice == 3:
        shape = tuple(int(10 ** rng.integers(0, 13)) for _ in range(rng.integers(1, 3)))
        return npy_header(DTYPES[rng.integers(len(DTYPES))], shape) + bytes(
            int(rng.integers(0, 64))
        )
    if choice == 4:
        return rng.integers(0, 256, size=rng.integers(0, 200), dtype=np.uint8).tobytes()
    return npy_header("|O", (2,)) + b"\x80\x04junk"


def _mutate(good: bytes, members, rng, path) -> str:
    """Write one mutation of ``good`` (whose members are ``members``) to ``path``."""
    kind = int(rng.integers(10))
    data = bytearray(good)
    if kind == 0:  # flip bits anywhere
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(data))
        return "flip"
    if kind == 1:  # flip bytes in the zip headers (central directory and local headers)
        heads = central_entries(good) + [
            i for i in range(len(good)) if good.startswith(b"PK\x03\x04", i)
        ]
        at = heads[rng.integers(len(heads))] + int(rng.integers(4, 46))
        data[min(at, len(data) - 1)] = int(rng.integers(256))
        path.write_bytes(bytes(data))
        return "header flip"
    if kind == 2:  # truncate or append
        cut = int(rng.integers(len(data)))
        path.write_bytes(bytes(data[:cut]) if rng.random() < 0.8 else bytes(data) + bytes(cut))
        return "truncate"
    if kind in (3, 4, 5):  # metadata edits, possibly several
        meta = meta_of(members)
        for _ in range(rng.integers(1, 3)):
            meta = _edit_meta(meta, rng)
        write_members(path, with_meta(members, meta))
        return "meta"
    names = [name for name, _ in members]
    victim = names[rng.integers(len(names))]
    if kind == 6:  # drop, duplicate or rename a member
        action = rng.integers(3)
        out = [(n, d) for n, d in members if n != victim or action == 1]
        if action == 1:
            out.append((victim, dict(members)[victim]))
        if action == 2:
            out.append((names[rng.integers(len(names))][:-4] + "x.npy", dict(members)[victim]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile: duplicate name
            write_members(path, out)
        return "members"
    if kind == 7:  # swap two members' contents
        other = names[rng.integers(len(names))]
        content = dict(members)
        write_members(
            path,
            [
                (n, content[other] if n == victim else content[victim] if n == other else d)
                for n, d in members
            ],
        )
        return "swap"
    if kind == 8:  # replace a member
        write_members(
            path, [(n, _random_member_bytes(rng) if n == victim else d) for n, d in members]
        )
        return "replace"
    if rng.random() < 0.3:  # a deflated archive (valid) with a byte flipped inside
        write_members(path, members, compression=zipfile.ZIP_DEFLATED)
        if rng.random() < 0.5:
            data = bytearray(path.read_bytes())
            data[rng.integers(len(data))] ^= 0xFF
            path.write_bytes(bytes(data))
        return "deflate"
    n = [1 << 21, 1 << 24][rng.integers(2)]  # 8 or 64 MiB of zeros in ~10-70 kB
    header = npy_header(["<f4", "|u1"][rng.integers(2)], (n,))
    write_with_bomb(path, members, victim, header, n)
    return "bomb"


def _check_outcome(loader, path, sample, failures, label):
    try:
        model = loader(path)
    except ValueError as error:
        if type(error) is not ValueError or str(path) not in str(error):
            failures.append(f"{label}: {type(error).__name__} {error}"[:300])
        return "rejected"
    except Exception as error:  # the point of the test
        failures.append(f"{label}: {type(error).__name__}: {error}"[:300])
        return "error"
    try:
        codes = model.encode(sample)
        assert codes.dtype == np.uint8 and codes.shape[0] == len(sample)
    except Exception as error:
        failures.append(f"{label}: loaded, but encode raised {type(error).__name__}: {error}"[:300])
    return "loaded"


@pytest.mark.parametrize("kind", list(N_MUTATIONS))
def test_mutated_model_files_load_or_raise_value_error(models, tmp_path, kind):
    loader, fitted, sample = models[kind]
    rng = np.random.default_rng([12, len(kind)])
    sources = []
    for index, model in enumerate(fitted):
        good = tmp_path / f"good{index}.npz"
        model.save(good)
        sources.append((good.read_bytes(), read_members(good)))
        np.testing.assert_array_equal(loader.load(good).encode(sample), model.encode(sample))
    failures: list[str] = []
    outcomes: dict[str, int] = {}
    path = tmp_path / "mutant.npz"
    for i in range(N_MUTATIONS[kind]):
        good, members = sources[i % len(sources)]
        label = f"#{i} " + _mutate(good, members, rng, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile: duplicate names
            outcome = _check_outcome(loader.load, path, sample, failures, label)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert not failures, f"{len(failures)} failures, e.g.\n" + "\n".join(failures[:15])
    assert outcomes.get("rejected", 0) > N_MUTATIONS[kind] // 2  # the mutations bite
    assert outcomes.get("loaded", 0) > 0  # and harmless ones still load


# ============================================================================ descriptors


def _descriptor_outcome(path, failures, label):
    try:
        out = load_descriptors(path)
    except ValueError as error:
        if (
            type(error) is not ValueError
            or str(path) not in str(error)
            or ("allow_pickle" in str(error))
        ):
            failures.append(f"{label}: {error}"[:300])
        return
    except Exception as error:
        failures.append(f"{label}: {type(error).__name__}: {error}"[:300])
        return
    if out.dtype != np.float32 or out.ndim != 2 or not out.flags.c_contiguous:
        failures.append(f"{label}: returned {out.dtype} {out.shape}")


@pytest.mark.parametrize("suffix", [".npy", ".fvecs"])
def test_mutated_descriptor_files_load_or_raise_value_error(tmp_path, suffix):
    rng = np.random.default_rng([34, len(suffix)])
    X = rng.normal(size=(6, 5)).astype(np.float32)
    good_path = tmp_path / f"good{suffix}"
    if suffix == ".npy":
        np.save(good_path, X)
    else:
        save_fvecs(good_path, X)
    good = good_path.read_bytes()
    path = tmp_path / f"mutant{suffix}"
    failures: list[str] = []
    for i in range(1500):
        data = bytearray(good)
        kind = rng.integers(5)
        if kind == 0:
            for _ in range(rng.integers(1, 4)):
                # Mostly inside the .npy header, where numbers and text are parsed.
                at = (
                    rng.integers(min(len(data), 128))
                    if rng.random() < 0.7
                    else rng.integers(len(data))
                )
                data[at] = int(rng.integers(256))
        elif kind == 1:
            data = data[: rng.integers(len(data))]
        elif kind == 2 and suffix == ".npy":
            text = bytes(data[:128]).decode("latin1")
            for old, new in [
                (
                    "(6, 5)",
                    [
                        "(6,)",
                        "(10**9, 5)",
                        "(-1, 5)",
                        "(6, 5, 1)",
                        "(6.0, 5)",
                        "[6, 5]",
                        "(True, 5)",
                        "(99999999999999999999, 5)",
                    ][rng.integers(8)],
                ),
                (
                    "'<f4'",
                    [
                        "'|O'",
                        "'<U2'",
                        "'f4,f4'",
                        "'(2,)f4'",
                        "'>f8'",
                        "'<M8'",
                        "'<f2'",
                        "[('a', '<f4')]",
                    ][rng.integers(8)],
                ),
            ]:
                if rng.random() < 0.6:
                    text = text.replace(old, new)
            data = bytearray(text.encode("latin1")) + data[128:]
        elif kind == 3:
            data = bytearray(
                rng.integers(0, 256, size=rng.integers(0, 300), dtype=np.uint8).tobytes()
            )
        else:
            data = bytearray(
                b"1 2 3\n4 5 6\n"
                if rng.random() < 0.5
                else npy_bytes(np.zeros((2, 2)))
                if suffix == ".fvecs"
                else io.BytesIO(np.array([3, 0, 0, 0], "<i4").tobytes()).read()
            )
        path.write_bytes(bytes(data))
        _descriptor_outcome(path, failures, f"#{i} kind {kind}")
    assert not failures, f"{len(failures)} failures, e.g.\n" + "\n".join(failures[:15])


def test_mutated_files_never_show_a_meta_member_to_np_load(tmp_path):
    # A metadata entry that is itself a forged header: checked like any member.
    path = tmp_path / "m.npz"
    write_members(path, [(META, npy_header("|u1", (10**15,)) + b"{}")])
    with pytest.raises(ValueError, match=r"m\.npz"):
        DeepHash.load(path)
