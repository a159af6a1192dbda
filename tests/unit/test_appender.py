"""RowAppender (whole-chunk appends, datasets sized up front) and WriteBehind (writes on a second thread)."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from tracerflow.io.h5target import H5Writer
from tracerflow.write.appender import RowAppender, WriteBehind


def append_in_pieces(path, pieces, expected_rows: int = 0) -> None:
    with H5Writer(path, "test", 1, "digest", "test") as w:
        rows = RowAppender(w)
        rows.create("x", np.float32, (3,), expected_rows)
        with WriteBehind(rows) as behind:
            for piece in pieces:
                behind.add({"x": piece})
        rows.flush()


@pytest.mark.parametrize("expected_rows", [0, 500, 1000, 5000])
def test_rows_arrive_in_order_whatever_the_announced_length(tmp_path, expected_rows):
    data = np.arange(3000 * 3, dtype=np.float32).reshape(3000, 3)
    cuts = [0, 1, 700, 701, 2500, 3000]
    path = tmp_path / f"x{expected_rows}.h5"
    append_in_pieces(path, [data[a:b] for a, b in zip(cuts, cuts[1:])], expected_rows)
    with h5py.File(path) as f:
        assert f["x"].shape == (3000, 3) and f["x"].maxshape == (None, 3)
        np.testing.assert_array_equal(f["x"][()], data)


def test_the_same_rows_give_the_same_bytes_announced_or_not(tmp_path):
    data = np.random.default_rng(0).normal(size=(20000, 3)).astype(np.float32)
    append_in_pieces(tmp_path / "grown.h5", np.array_split(data, 7), 0)
    append_in_pieces(tmp_path / "sized.h5", np.array_split(data, 7), len(data))
    with h5py.File(tmp_path / "grown.h5") as a, h5py.File(tmp_path / "sized.h5") as b:
        np.testing.assert_array_equal(a["x"][()], b["x"][()])
        assert a["x"].chunks == b["x"].chunks


def test_a_failed_write_reaches_the_caller_and_no_file_is_left(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(ValueError, match="adding rows of shape"):
        append_in_pieces(path, [np.zeros((10, 3), np.float32), np.zeros((10, 4), np.float32),
                                np.zeros((10, 3), np.float32)])
    assert list(tmp_path.iterdir()) == []
