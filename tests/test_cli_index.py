"""``deephash index build / add / remove / search / info``: each agrees with the BinaryIndex
API it wraps, and every user error is one line with exit status 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from deephash_ext import BinaryIndex
from deephash_ext.cli import main


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 4, size=(200, 4), dtype=np.uint8)  # few values: many ties
    queries = rng.integers(0, 4, size=(6, 4), dtype=np.uint8)
    ids = rng.permutation(1000)[:200].astype(np.int64) * 7
    paths = {name: tmp_path / f"{name}.npy" for name in ("codes", "queries", "ids")}
    for name, array in (("codes", codes), ("queries", queries), ("ids", ids)):
        np.save(paths[name], array)
    return codes, queries, ids, paths, tmp_path / "index.dhx"


def _api_index(codes, ids):
    index = BinaryIndex(32)
    index.add(codes, ids)
    return index


def test_build_then_search_equals_the_api(files, capsys):
    codes, queries, ids, paths, index_path = files
    assert (
        main(["index", "build", str(paths["codes"]), str(index_path), "--ids", str(paths["ids"])])
        == 0
    )
    assert "200 codes of 32 bits" in capsys.readouterr().out
    out_file = index_path.parent / "res.npz"
    argv = ["index", "search", str(index_path), str(paths["queries"]), "-k", "7"]
    assert main([*argv, "--output", str(out_file)]) == 0
    expected = _api_index(codes, ids).search(queries, 7)
    with np.load(out_file) as saved:
        np.testing.assert_array_equal(saved["distances"], expected[0])
        np.testing.assert_array_equal(saved["ids"], expected[1])
    capsys.readouterr()
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "0 " + " ".join(f"{i}:{d}" for i, d in zip(expected[1][0], expected[0][0]))


def test_radius_search_equals_the_api(files, capsys):
    codes, queries, ids, paths, index_path = files
    assert (
        main(["index", "build", str(paths["codes"]), str(index_path), "--ids", str(paths["ids"])])
        == 0
    )
    out_file = index_path.parent / "res.npz"
    argv = ["index", "search", str(index_path), str(paths["queries"]), "--radius", "2"]
    assert main([*argv, "--output", str(out_file)]) == 0
    lims, distances, found = _api_index(codes, ids).range_search(queries, 2)
    with np.load(out_file) as saved:
        np.testing.assert_array_equal(saved["lims"], lims)
        np.testing.assert_array_equal(saved["distances"], distances)
        np.testing.assert_array_equal(saved["ids"], found)


def test_add_remove_info(files, tmp_path, capsys):
    codes, queries, ids, paths, index_path = files
    assert main(["index", "build", str(paths["codes"]), str(index_path)]) == 0
    assert main(["index", "add", str(index_path), str(paths["queries"])]) == 0
    gone = tmp_path / "gone.npy"
    np.save(gone, np.array([0, 3, 201, 5000]))
    assert main(["index", "remove", str(index_path), str(gone)]) == 0
    assert "removed 3; 203 codes" in capsys.readouterr().out
    expected = BinaryIndex(32, compact_threshold=None)
    expected.add(codes)
    expected.add(queries)
    expected.remove([0, 3, 201, 5000])
    loaded = BinaryIndex.load(index_path)
    np.testing.assert_array_equal(loaded.ids, expected.ids)
    assert loaded.n_removed == 3
    assert main(["index", "info", str(index_path), "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["len"] == 203 and info["n_removed"] == 3 and info["next_id"] == 206
    assert info["checksums"] == "verified"
    assert main(["index", "remove", str(index_path), str(gone), "--compact"]) == 0
    assert BinaryIndex.load(index_path).n_removed == 0


def test_upsert(files, tmp_path):
    codes, _, _, paths, index_path = files
    assert main(["index", "build", str(paths["codes"]), str(index_path)]) == 0
    one = tmp_path / "one.npy"
    np.save(one, np.array([7]))
    new_code = tmp_path / "new.npy"
    np.save(new_code, np.full((1, 4), 255, dtype=np.uint8))
    assert main(["index", "add", str(index_path), str(new_code), "--ids", str(one)]) == 1
    argv = ["index", "add", str(index_path), str(new_code), "--ids", str(one), "--upsert"]
    assert main(argv) == 0
    index = BinaryIndex.load(index_path)
    assert len(index) == 200 and index.ids[-1] == 7
    np.testing.assert_array_equal(index.get(7), [255, 255, 255, 255])


@pytest.mark.parametrize(
    "argv_of, message",
    [
        (lambda p, i: ["index", "search", str(p["codes"]), str(p["queries"])], "not a valid"),
        (lambda p, i: ["index", "search", str(i) + ".missing", str(p["queries"])], "No such"),
        (lambda p, i: ["index", "search", str(i), str(p["queries"]), "-k", "0"], "k must be"),
        (lambda p, i: ["index", "search", str(i), str(p["ids"])], "uint8"),
        (lambda p, i: ["index", "add", str(i), str(p["ids"])], "uint8"),
        (
            lambda p, i: ["index", "build", str(p["codes"]), str(i), "--ids", str(p["queries"])],
            "ids",
        ),
        (
            lambda p, i: ["index", "search", str(i), str(p["queries"]), "--radius", "-1"],
            "max_distance",
        ),
    ],
)
def test_user_errors_are_one_line(files, capsys, argv_of, message):
    _, _, _, paths, index_path = files
    assert main(["index", "build", str(paths["codes"]), str(index_path)]) == 0
    before = index_path.read_bytes()
    capsys.readouterr()
    assert main(argv_of(paths, index_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("deephash: error: ") and err.count("\n") == 1 and message in err
    assert index_path.read_bytes() == before  # a failed command leaves the index file as it was


def test_truncated_index_file_is_one_line(files, capsys):
    _, _, _, paths, index_path = files
    assert main(["index", "build", str(paths["codes"]), str(index_path)]) == 0
    index_path.write_bytes(index_path.read_bytes()[:-9])
    capsys.readouterr()
    assert main(["index", "info", str(index_path)]) == 1
    assert "truncated" in capsys.readouterr().err


def test_build_with_mih_tables(tmp_path, capsys):
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, size=(3000, 8), dtype=np.uint8)
    np.save(tmp_path / "codes.npy", codes)
    np.save(tmp_path / "q.npy", codes[:4])
    index_path = tmp_path / "mih.dhx"
    argv = ["index", "build", str(tmp_path / "codes.npy"), str(index_path), "--method", "auto"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["index", "info", str(index_path)]) == 0
    assert json.loads(capsys.readouterr().out)["mih_tables"] is True
    assert main(["index", "search", str(index_path), str(tmp_path / "q.npy"), "-k", "3"]) == 0
    flat = BinaryIndex(64)
    flat.add(codes)
    distances, ids = flat.search(codes[:4], 3)
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "2 " + " ".join(f"{i}:{d}" for i, d in zip(ids[2], distances[2]))
