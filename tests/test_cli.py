"""The ``deephash`` command line: fit / encode / search / search-demo on small files.

``demo`` (the long job) is not run here. Each command is called through
:func:`deephash_ext.cli.main` and must agree with the Python API it wraps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import deephash_ext
import numpy as np
import pytest
from deephash_ext import DeepHash
from deephash_ext.cli import main

FIT_ARGS = ["--layers", "32,16", "--epochs", "2", "--learning-rate", "0.01", "--seed", "3",
            "--quiet"]


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
            zip(indices[q].tolist(), distances[q].tolist()))
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


@pytest.mark.parametrize("argv", [
    ["search-demo", "--bits", "60"],
    ["search-demo", "--n", "5"],
    ["search-demo", "--n", "100", "--queries", "101"],
    ["search", "db.npy"],
    ["no-such-command"],
    [],
])
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


def test_errors_return_1_with_one_line(descriptors, model_file, code_files, tmp_path,
                                       capsys):
    X, x_path = descriptors
    database, _, db_path, q_path = code_files
    missing = tmp_path / "missing.npy"
    _fails(["fit", missing, tmp_path / "m.npz", *FIT_ARGS], capsys, str(missing))
    _fails(["encode", tmp_path / "missing.npz", x_path, tmp_path / "c.npy"], capsys,
           "missing.npz")
    _fails(["encode", model_file, missing, tmp_path / "c.npy"], capsys, str(missing))
    _fails(["search", missing, q_path], capsys, str(missing))
    # Codes must be uint8.
    floats = tmp_path / "float_codes.npy"
    np.save(floats, database.astype(np.float32))
    _fails(["search", floats, q_path], capsys, "uint8")
    _fails(["search", db_path, floats], capsys, "uint8")
    # Invalid values reach the API and come back as messages.
    _fails(["fit", x_path, tmp_path / "m.npz", "--layers", "30", "--quiet"], capsys,
           "hidden_layer_sizes")
    _fails(["fit", x_path, tmp_path / "m.npz", *FIT_ARGS, "--learning-rate", "0"], capsys,
           "learning_rate")
    _fails(["encode", model_file, x_path, tmp_path / "c.npy", "--layer", "5"], capsys, "layer")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, X[:, :40])
    _fails(["encode", model_file, wrong, tmp_path / "c.npy"], capsys, "features")
    not_a_model = tmp_path / "not_a_model.npz"
    not_a_model.write_bytes(b"not a zip file at all")
    _fails(["encode", not_a_model, x_path, tmp_path / "c.npy"], capsys, str(not_a_model))
    _fails(["search", db_path, q_path, "-k", "0"], capsys, "k")
    # Nothing was written by the failed commands.
    assert sorted(os.listdir(tmp_path)) == ["X.npy", "db.npy", "float_codes.npy",
                                            "model.npz", "not_a_model.npz", "q.npy",
                                            "wrong.npy"]


def test_python_m_help():
    result = subprocess.run([sys.executable, "-m", "deephash_ext", "--help"],
                            capture_output=True, text=True, timeout=60, check=True)
    for command in ("demo", "fit", "encode", "search", "search-demo"):
        assert command in result.stdout
    assert result.stderr == ""


def test_console_script():
    script = shutil.which("deephash")
    if script is None:
        pytest.skip("the deephash console script is not on PATH")
    result = subprocess.run([script, "search", "--help"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "usage: deephash search" in result.stdout


def test_demo_runs_the_whole_pipeline_on_a_small_set(tmp_path, monkeypatch, capsys):
    """The main job end to end (tiny: 60 instances, 64 bits, one epoch), plot included."""
    pytest.importorskip("torch")
    monkeypatch.setenv("DEEPHASH_DATA", str(tmp_path / "data"))
    out = tmp_path / "demo"
    assert main(["demo", "--instances", "60", "--bits", "64", "--epochs", "1",
                 "--finetune-epochs", "1", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for scheme in ("Fisher Vector", "FV > training means", "LSH", "ITQ", "BPBC",
                   "DeepHash 8192-4096-2048-64", "DeepHash+ 8192-4096-2048-64",
                   "hashing_reg=0.2", "The paper's claims"):
        assert scheme in printed, scheme
    assert (out / "recall_vs_bits.png").stat().st_size > 10_000
    import json
    results = json.loads((out / "results.json").read_text())
    assert {r["scheme"] for r in results["rows"]} >= {"LSH", "ITQ", "BPBC"}
    for row in results["rows"]:
        assert 0.0 <= row["mAP"] <= 1.0 and 0.0 <= row["4xrecall@4"] <= 4.0
