"""The ``deephash`` command line: fit / encode / search / search-demo on small files.

``demo`` (the long job) is not run here. Each command is called through
:func:`deephash_ext.cli.main` and must agree with the Python API it wraps.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import deephash_ext
import numpy as np
import pytest
from deephash_ext import DeepHash
from deephash_ext.cli import main

FIT_ARGS = [
    "--layers",
    "32,16",
    "--epochs",
    "2",
    "--learning-rate",
    "0.01",
    "--seed",
    "3",
    "--quiet",
]


@pytest.fixture
def descriptors(tmp_path):
    """Clustered float32 descriptors (60 instances x 3 views x 48 dims) saved as .npy."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(60, 1, 48))
    X = (centres + 0.5 * rng.normal(size=(60, 3, 48))).reshape(180, 48).astype(np.float32)
    path = tmp_path / "X.npy"
    np.save(path, X)
    return X, path


@pytest.fixture
def model_file(descriptors, tmp_path, capsys):
    _, path = descriptors
    model = tmp_path / "model.npz"
    assert main(["fit", str(path), str(model), *FIT_ARGS]) == 0
    out = capsys.readouterr().out
    assert "48-32-16" in out and str(model) in out
    return model


def test_fit_trains_the_same_model_as_the_api(descriptors, model_file):
    X, _ = descriptors
    loaded = DeepHash.load(model_file)
    reference = DeepHash((32, 16), n_epochs=2, learning_rate=0.01, random_state=3).fit(X)
    assert loaded.get_params() == reference.get_params()
    for a, b in zip(loaded.components_, reference.components_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.encode(X), reference.encode(X))


@pytest.mark.parametrize("layer", [None, "0", "-1"])
def test_encode_npy_matches_api(descriptors, model_file, tmp_path, capsys, layer):
    X, path = descriptors
    output = tmp_path / "codes.npy"
    extra = [] if layer is None else ["--layer", layer]
    assert main(["encode", str(model_file), str(path), str(output), *extra]) == 0
    codes = np.load(output)
    expected = DeepHash.load(model_file).encode(X, layer=-1 if layer is None else int(layer))
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, expected)
    assert f"{len(X)} codes of {expected.shape[1] * 8} bits" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["X.npy", "codes.npy", "model.npz"]


def test_encode_reads_fvecs(descriptors, model_file, tmp_path):
    datasets = pytest.importorskip("deephash_ext.datasets")
    X, _ = descriptors
    fvecs = tmp_path / "X.fvecs"
    datasets.save_fvecs(fvecs, X)
    output = tmp_path / "codes.npy"
    assert main(["encode", str(model_file), str(fvecs), str(output)]) == 0
    np.testing.assert_array_equal(np.load(output), DeepHash.load(model_file).encode(X))


def test_fit_reads_fvecs(descriptors, tmp_path, capsys):
    datasets = pytest.importorskip("deephash_ext.datasets")
    X, path = descriptors
    fvecs = tmp_path / "X.fvecs"
    datasets.save_fvecs(fvecs, X)
    assert main(["fit", str(fvecs), str(tmp_path / "a.npz"), *FIT_ARGS]) == 0
    assert main(["fit", str(path), str(tmp_path / "b.npz"), *FIT_ARGS]) == 0
    a, b = DeepHash.load(tmp_path / "a.npz"), DeepHash.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.encode(X), b.encode(X))


@pytest.fixture
def code_files(tmp_path):
    rng = np.random.default_rng(1)
    database = rng.integers(0, 256, size=(300, 8), dtype=np.uint8)
    queries = database[[5, 17, 250]] ^ rng.integers(0, 2, size=(3, 8), dtype=np.uint8)
    queries = np.concatenate([queries, rng.integers(0, 256, size=(4, 8), dtype=np.uint8)])
    np.save(tmp_path / "db.npy", database)
    np.save(tmp_path / "q.npy", queries)
    return database, queries, tmp_path / "db.npy", tmp_path / "q.npy"


def test_search_prints_the_api_results(code_files, capsys):
    database, queries, db_path, q_path = code_files
    assert main(["search", str(db_path), str(q_path), "-k", "5"]) == 0
    distances, indices = deephash_ext.search(database, queries, k=5)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(queries)
    for q, line in enumerate(lines):
        number, *hits = line.split()
        assert int(number) == q
        assert [tuple(map(int, h.split(":"))) for h in hits] == list(
            zip(indices[q].tolist(), distances[q].tolist())
        )
    assert indices[0, 0] == 5 and indices[1, 0] == 17 and indices[2, 0] == 250


def test_search_saves_the_api_results(code_files, tmp_path, capsys):
    database, queries, db_path, q_path = code_files
    output = tmp_path / "hits.npz"
    assert main(["search", str(db_path), str(q_path), "-k", "7", "--output", str(output)]) == 0
    assert str(output) in capsys.readouterr().out
    distances, indices = deephash_ext.search(database, queries, k=7)
    with np.load(output, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["distances", "indices"]
        np.testing.assert_array_equal(saved["distances"], distances)
        np.testing.assert_array_equal(saved["indices"], indices)
    assert sorted(os.listdir(tmp_path)) == ["db.npy", "hits.npz", "q.npy"]


def test_search_default_k(code_files, capsys):
    _, _, db_path, q_path = code_files
    assert main(["search", str(db_path), str(q_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert all(len(line.split()) == 1 + 10 for line in lines)


def test_search_demo(capsys):
    assert main(["search-demo", "--n", "2000", "--bits", "64", "--queries", "20"]) == 0
    out = capsys.readouterr().out
    assert "2,000 random 64-bit codes" in out and "range_search" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["search-demo", "--bits", "60"],
        ["search-demo", "--n", "5"],
        ["search-demo", "--n", "100", "--queries", "101"],
        ["search-demo", "--bits", "8", "--max-flips", "9"],
        ["search-demo", "--max-flips", "-1"],
        ["search-demo", "--seed", "-1"],
        ["search", "db.npy"],
        ["no-such-command"],
        [],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: deephash" in capsys.readouterr().err


def _one_line_error(status, capsys, *needles):
    """The contract for user errors: exit 1, one line on stderr naming the culprit."""
    captured = capsys.readouterr()
    assert status == 1, captured
    assert "Traceback" not in captured.out + captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("deephash: error: "), captured.err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


def _fails(argv, capsys, *needles):
    return _one_line_error(main([str(a) for a in argv]), capsys, *needles)


def test_errors_return_1_with_one_line(descriptors, model_file, code_files, tmp_path, capsys):
    X, x_path = descriptors
    database, _, db_path, q_path = code_files
    missing = tmp_path / "missing.npy"
    _fails(["fit", missing, tmp_path / "m.npz", *FIT_ARGS], capsys, str(missing))
    _fails(["encode", tmp_path / "missing.npz", x_path, tmp_path / "c.npy"], capsys, "missing.npz")
    _fails(["encode", model_file, missing, tmp_path / "c.npy"], capsys, str(missing))
    _fails(["search", missing, q_path], capsys, str(missing))
    # Codes must be uint8.
    floats = tmp_path / "float_codes.npy"
    np.save(floats, database.astype(np.float32))
    _fails(["search", floats, q_path], capsys, "uint8")
    _fails(["search", db_path, floats], capsys, "uint8")
    # Invalid values reach the API and come back as messages.
    _fails(
        ["fit", x_path, tmp_path / "m.npz", "--layers", "30", "--quiet"],
        capsys,
        "hidden_layer_sizes",
    )
    _fails(
        ["fit", x_path, tmp_path / "m.npz", *FIT_ARGS, "--learning-rate", "0"],
        capsys,
        "learning_rate",
    )
    _fails(["encode", model_file, x_path, tmp_path / "c.npy", "--layer", "5"], capsys, "layer")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, X[:, :40])
    _fails(["encode", model_file, wrong, tmp_path / "c.npy"], capsys, "features")
    not_a_model = tmp_path / "not_a_model.npz"
    not_a_model.write_bytes(b"not a zip file at all")
    _fails(["encode", not_a_model, x_path, tmp_path / "c.npy"], capsys, str(not_a_model))
    _fails(["search", db_path, q_path, "-k", "0"], capsys, "k")
    # Nothing was written by the failed commands.
    assert sorted(os.listdir(tmp_path)) == [
        "X.npy",
        "db.npy",
        "float_codes.npy",
        "model.npz",
        "not_a_model.npz",
        "q.npy",
        "wrong.npy",
    ]


# ---------------------------------------------------------------- issue 12: user errors
def _output_argv(kind, descriptors, model_file, code_files, output):
    """A command of each kind that writes ``output``."""
    _, x_path = descriptors
    _, _, db_path, q_path = code_files
    return {
        "fit": ["fit", x_path, output, *FIT_ARGS],
        "encode": ["encode", model_file, x_path, output],
        "search": ["search", db_path, q_path, "--output", output],
    }[kind]


@pytest.mark.parametrize("kind", ["fit", "encode", "search"])
def test_output_path_that_is_a_directory(
    kind, descriptors, model_file, code_files, tmp_path, capsys
):
    folder = tmp_path / "out"
    folder.mkdir()
    argv = _output_argv(kind, descriptors, model_file, code_files, folder)
    line = _fails(argv, capsys, str(folder), "directory")
    assert ".tmp" not in line  # the target is named, not a temporary file
    assert os.listdir(folder) == []
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


@pytest.mark.parametrize("kind", ["fit", "encode", "search"])
def test_output_that_is_a_read_only_file(
    kind, descriptors, model_file, code_files, tmp_path, capsys
):
    target = tmp_path / "read_only.out"
    target.write_bytes(b"keep me")
    target.chmod(0o444)
    argv = _output_argv(kind, descriptors, model_file, code_files, target)
    _fails(argv, capsys, str(target), "read-only")
    assert target.read_bytes() == b"keep me"
    assert (target.stat().st_mode & 0o777) == 0o444


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders"
)
@pytest.mark.parametrize("kind", ["fit", "encode", "search"])
def test_output_in_a_read_only_folder(kind, descriptors, model_file, code_files, tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        argv = _output_argv(kind, descriptors, model_file, code_files, folder / "out.npy")
        _fails(argv, capsys, str(folder / "out.npy"), "not writable")
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("kind", ["fit", "encode", "search"])
def test_output_in_a_folder_the_user_cannot_write(
    kind, descriptors, model_file, code_files, tmp_path, capsys, monkeypatch
):
    """As the test above, for any user (root included): the folder is reported as not
    writable by os.access, and the command stops before any work."""
    folder = tmp_path / "locked"
    folder.mkdir()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if os.fspath(path) == str(folder) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    argv = _output_argv(kind, descriptors, model_file, code_files, folder / "out.npy")
    _fails(argv, capsys, str(folder / "out.npy"), "not writable")
    assert os.listdir(folder) == []


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux sysfs")
@pytest.mark.parametrize("kind", ["fit", "encode", "search"])
def test_output_on_a_read_only_file_system(kind, descriptors, model_file, code_files, capsys):
    """sysfs refuses new files even to root: the write itself fails, after the checks."""
    target = "/sys/deephash-cli-test.out"
    argv = _output_argv(kind, descriptors, model_file, code_files, target)
    _fails(argv, capsys, "deephash-cli-test.out")
    assert not os.path.exists(target)


@pytest.mark.parametrize("kind", ["fit", "encode", "search"])
def test_output_in_a_missing_folder(kind, descriptors, model_file, code_files, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "out.npy"
    argv = _output_argv(kind, descriptors, model_file, code_files, target)
    line = _fails(argv, capsys, str(target))
    assert ".tmp" not in line


def test_write_error_is_one_line(descriptors, model_file, tmp_path, capsys, monkeypatch):
    """Whatever OSError the write raises (a full disk here) is reported, not a traceback."""
    import errno

    from deephash_ext import cli

    def disk_full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cli, "atomic_write", disk_full)
    _, x_path = descriptors
    target = tmp_path / "codes.npy"
    _fails(["encode", model_file, x_path, target], capsys, str(target), "No space left")


def _npy_with_header_of(path, header_bytes):
    """A uint8 (3, 4) .npy file (format 2.0) whose header is ``header_bytes`` long."""
    import struct

    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }"
    header = header.ljust(header_bytes - 1).encode("latin1") + b"\n"
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header + bytes(12))
    return path


def test_oversized_npy_header(code_files, descriptors, tmp_path, capsys):
    _, _, db_path, q_path = code_files
    big = _npy_with_header_of(tmp_path / "big.npy", 200_000)
    line = _fails(["search", db_path, big], capsys, str(big), "header")
    assert "allow_pickle" not in line
    _fails(["search", big, q_path], capsys, str(big), "header")
    # Descriptors (read by the library's loader) are one line too.
    _fails(["fit", big, tmp_path / "m.npz", *FIT_ARGS], capsys, str(big))


def test_npy_that_declares_more_data_than_it_holds(code_files, tmp_path, capsys):
    """The header's shape is checked against the file size before anything is allocated."""
    _, _, db_path, _ = code_files
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000000, 8), }"
    header = header.ljust(127).encode("latin1") + b"\n"
    huge = tmp_path / "huge.npy"
    huge.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(16))
    _fails(["search", db_path, huge], capsys, str(huge), "but only")


@pytest.mark.parametrize("content", [b"1 2 3\n4 5 6\n", b"", b"PK\x03\x04garbage"])
def test_codes_file_that_is_not_npy(content, code_files, tmp_path, capsys):
    _, _, db_path, _ = code_files
    path = tmp_path / "codes.npy"
    path.write_bytes(content)
    line = _fails(["search", db_path, path], capsys, str(path), "is not a readable")
    assert "allow_pickle" not in line and "pickle" not in line


def test_model_file_that_is_a_corrupt_zip(descriptors, model_file, tmp_path, capsys):
    _, x_path = descriptors
    data = model_file.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    _fails(["encode", truncated, x_path, tmp_path / "c.npy"], capsys, str(truncated))
    # A corrupted member (its CRC no longer matches).
    start = data.index(b"components_0.npy") + 200
    flipped = tmp_path / "flipped.npz"
    flipped.write_bytes(data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1 :])
    _fails(["encode", flipped, x_path, tmp_path / "c.npy"], capsys, str(flipped))
    assert not (tmp_path / "c.npy").exists()


def _zip_with_compression_method(data, method):
    """``data`` (a zip) with the compression method of its central directory entries set."""
    import struct

    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        out[at + 10 : at + 12] = struct.pack("<H", method)
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def test_model_file_with_a_corrupt_zip_directory(descriptors, model_file, tmp_path, capsys):
    _, x_path = descriptors
    bad = tmp_path / "bad_directory.npz"
    bad.write_bytes(_zip_with_compression_method(model_file.read_bytes(), 99))
    _fails(["encode", bad, x_path, tmp_path / "c.npy"], capsys, str(bad))


def test_model_member_that_declares_a_huge_array(descriptors, model_file, tmp_path, capsys):
    """A member whose .npy header declares petabytes: an error, not an allocation."""
    import zipfile

    _, x_path = descriptors
    huge = tmp_path / "huge_member.npz"
    with zipfile.ZipFile(model_file) as source, zipfile.ZipFile(huge, "w") as target:
        for name in source.namelist():
            payload = source.read(name)
            if name == "components_0.npy":
                header = (
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000000, 48), }"
                ).ljust(127)
                payload = (
                    b"\x93NUMPY\x01\x00"
                    + (128).to_bytes(2, "little")
                    + header.encode("latin1")
                    + b"\n"
                    + bytes(64)
                )
            target.writestr(name, payload)
    _one_line_error(main(["encode", str(huge), str(x_path), str(tmp_path / "c.npy")]), capsys)


def test_huge_layers_fail_before_allocating(descriptors, tmp_path, capsys):
    _, x_path = descriptors
    for layers in (f"{2**60}", f"16,{2**60}", "99999999992"):
        line = _fails(
            ["fit", x_path, tmp_path / "m.npz", "--layers", layers, "--quiet"],
            capsys,
            "--layers",
            layers,
        )
        assert "memory" in line
    assert sorted(os.listdir(tmp_path)) == ["X.npy"]


@pytest.mark.parametrize(
    "argv, option",
    [
        (["fit", "X.npy", "m.npz", "--layers", "32,x"], "--layers"),
        (["fit", "X.npy", "m.npz", "--layers", "1e9"], "--layers"),
        (["fit", "X.npy", "m.npz", "--epochs", "2.5"], "--epochs"),
        (["fit", "X.npy", "m.npz", "--seed", ""], "--seed"),
        (["encode", "m.npz", "X.npy", "c.npy", "--layer", "last"], "--layer"),
        (["search", "db.npy", "q.npy", "-k", "ten"], "-k"),
        (["search-demo", "--n", "1e6"], "--n"),
        (["demo", "--bits", "64,x"], "--bits"),
        (["demo", "--bits", "60"], "--bits"),
    ],
)
def test_bad_ints_are_usage_errors(argv, option, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: deephash") and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error: argument " + option in last, last


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["search", "DB", "Q", "-k", str(10**30)], "k"),
        (["encode", "MODEL", "X", "OUT", "--layer", str(10**30)], "layer"),
        (["fit", "X", "OUT", "--layers", "16", "--epochs", "-1", "--quiet"], "n_epochs"),
    ],
)
def test_out_of_range_ints_are_one_line(
    argv, needle, descriptors, model_file, code_files, tmp_path, capsys
):
    _, x_path = descriptors
    _, _, db_path, q_path = code_files
    files = {
        "DB": db_path,
        "Q": q_path,
        "MODEL": model_file,
        "X": x_path,
        "OUT": tmp_path / "out.npz",
    }
    _fails([files.get(a, a) for a in argv], capsys, needle)


def test_missing_input_files_are_one_line(tmp_path, capsys):
    missing = tmp_path / "nothing.npy"
    _fails(["fit", missing, tmp_path / "m.npz"], capsys, str(missing))
    _fails(["encode", tmp_path / "nothing.npz", missing, tmp_path / "c.npy"], capsys, "nothing.npz")
    _fails(["search", missing, missing], capsys, str(missing))
    _fails(["search", tmp_path, missing], capsys, str(tmp_path))  # a folder, not a file


def test_interrupt_is_one_line_130_and_leaves_no_file(
    descriptors, model_file, tmp_path, capsys, monkeypatch
):
    """Ctrl-C half-way through writing the output: no traceback, no partial file."""
    _, x_path = descriptors
    real_save = np.save

    def save_then_interrupt(handle, array, *args, **kwargs):
        real_save(handle, array[: len(array) // 2], *args, **kwargs)  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", save_then_interrupt)
    before = sorted(os.listdir(tmp_path))
    try:
        status = main(["encode", str(model_file), str(x_path), str(tmp_path / "codes.npy")])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main")
    captured = capsys.readouterr()
    assert status == 130
    assert captured.err.strip() == "deephash: interrupted"
    assert sorted(os.listdir(tmp_path)) == before


def test_interrupt_during_fit(descriptors, tmp_path, capsys, monkeypatch):
    from deephash_ext import deephash

    def interrupted_fit(self, X, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(deephash.DeepHash, "fit", interrupted_fit)
    _, x_path = descriptors
    try:
        status = main(["fit", str(x_path), str(tmp_path / "m.npz"), *FIT_ARGS])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped main")
    assert status == 130
    assert capsys.readouterr().err.strip() == "deephash: interrupted"
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("out", ["file", "under_a_file"])
def test_demo_checks_out_before_its_work(out, tmp_path, capsys, monkeypatch):
    """--out that cannot be a folder is reported at once, not after the whole demo."""
    pytest.importorskip("matplotlib")
    from deephash_ext import datasets

    def no_demo(*args, **kwargs):
        raise AssertionError("the demo started its work before checking --out")

    monkeypatch.setattr(datasets, "load_retrieval_benchmark", no_demo)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    target = a_file if out == "file" else a_file / "results"
    _fails(["demo", "--out", target, "--quiet"], capsys, str(a_file))


def test_one_query_saved_1d_searches_like_its_2d_form(code_files, tmp_path, capsys):
    database, queries, db_path, _ = code_files
    one, two = tmp_path / "one.npy", tmp_path / "two.npy"
    np.save(one, queries[1])
    np.save(two, queries[1:2])
    assert main(["search", str(db_path), str(one), "-k", "4"]) == 0
    printed_1d = capsys.readouterr().out
    assert main(["search", str(db_path), str(two), "-k", "4"]) == 0
    assert printed_1d == capsys.readouterr().out
    distances, indices = deephash_ext.search(database, queries[1], k=4)
    assert printed_1d.split() == ["0"] + [f"{i}:{d}" for i, d in zip(indices, distances)]
    assert indices[0] == 17
    for path in (one, two):
        assert (
            main(
                [
                    "search",
                    str(db_path),
                    str(path),
                    "-k",
                    "4",
                    "--output",
                    str(tmp_path / f"{path.stem}.npz"),
                ]
            )
            == 0
        )
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        for name in ("distances", "indices"):
            assert a[name].shape == (1, 4)
            np.testing.assert_array_equal(a[name], b[name])


def test_multi_line_library_messages_become_one_line(
    descriptors, model_file, tmp_path, capsys, monkeypatch
):
    """Some messages span lines (scikit-learn's reshape advice, numpy's header warning,
    pybind's signature list); the CLI prints each as one line."""
    from deephash_ext import deephash

    def advise(self, X, layer=-1):
        raise ValueError(
            "Expected 2D array, got 1D array instead:\narray=[1. 2.].\nReshape your data."
        )

    monkeypatch.setattr(deephash.DeepHash, "encode", advise)
    _, x_path = descriptors
    _fails(
        ["encode", model_file, x_path, tmp_path / "c.npy"],
        capsys,
        "Expected 2D array, got 1D array instead: array=[1. 2.]. Reshape your data.",
    )
    assert not (tmp_path / "c.npy").exists()


def test_help_documents_the_exit_status():
    from deephash_ext import cli

    result = subprocess.run(
        [sys.executable, "-m", "deephash_ext", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "exit status" in result.stdout
    for status in ("0 success", "1 error", "2 usage", "130 interrupted"):
        assert status in " ".join(result.stdout.split()), status
    assert "Exit status" in cli.__doc__


def test_python_m_user_error_end_to_end(tmp_path):
    """The real process: exit 1, one stderr line, no traceback."""
    folder = tmp_path / "a_folder"
    folder.mkdir()
    db = tmp_path / "db.npy"
    np.save(db, np.zeros((4, 2), dtype=np.uint8))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deephash_ext",
            "search",
            str(db),
            str(db),
            "-k",
            "2",
            "--output",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("deephash: error: ") and str(folder) in result.stderr


def test_python_m_closed_stdout_is_quiet(code_files):
    """stdout closed before the results are printed (``| head -0``): no error text."""
    _, _, db_path, q_path = code_files
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all: the first write fails, deterministically
    try:
        result = subprocess.run(
            [sys.executable, "-m", "deephash_ext", "search", str(db_path), str(q_path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == ""


def test_python_m_usage_error_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "deephash_ext", "search", "a", "b", "-k", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("deephash search: error: ")


def test_python_m_help():
    result = subprocess.run(
        [sys.executable, "-m", "deephash_ext", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for command in ("demo", "fit", "encode", "search", "search-demo"):
        assert command in result.stdout
    assert result.stderr == ""


def test_console_script():
    script = shutil.which("deephash")
    if script is None:
        pytest.skip("the deephash console script is not on PATH")
    result = subprocess.run(
        [script, "search", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "usage: deephash search" in result.stdout


def test_demo_runs_the_whole_pipeline_on_a_small_set(tmp_path, monkeypatch, capsys):
    """The main job end to end on the tiny benchmark (64 bits), plot included."""
    pytest.importorskip("cv2")
    monkeypatch.setenv("DEEPHASH_DATA", str(tmp_path / "data"))
    out = tmp_path / "demo"
    args = ["demo", "--scale", "tiny", "--bits", "64", "--quiet", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for scheme in (
        "Fisher Vector",
        "FV > training means",
        "LSH",
        "ITQ",
        "BPBC",
        "DeepHash 128-1024-64",
        "DeepHash+ 128-1024-64",
        "hashing_reg=0.2",
        "Validation ROC AUC",
        "The paper's claims",
        "ITQ: mAP",
    ):
        assert scheme in printed, scheme
    # each margin with its 95 % paired bootstrap interval over the test queries
    margin = r"[+-]\d\.\d{3}"
    assert re.search(
        rf"DeepHash\+ (beats|does not beat) ITQ: mAP {margin} \[{margin}, {margin}\], "
        rf"recall@10 {margin} \[{margin}, {margin}\]",
        printed,
    ), printed
    assert (out / "recall_vs_bits.png").stat().st_size > 10_000
    import json

    results = json.loads((out / "results.json").read_text())
    assert {r["scheme"] for r in results["rows"]} >= {"LSH", "ITQ", "BPBC"}
    for row in results["rows"]:
        assert 0.0 <= row["mAP"] <= 1.0 and 0.0 <= row["4xrecall@4"] <= 4.0
        assert "per_query" not in row
