"""Zero-copy views of contiguous datasets, and the resampled file read through them or through h5py."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from tracerflow.io.contiguous_views import ContiguousViews


@pytest.fixture()
def mixed_file(tmp_path):
    path = tmp_path / "mixed.h5"
    rng = np.random.default_rng(0)
    data = {"plain": rng.normal(size=(1000, 3)).astype(np.float32), "halves": rng.normal(size=5000).astype(np.float16),
            "chunked": np.arange(4000, dtype=np.int64), "gzip": np.arange(4000, dtype=np.int32),
            "empty": np.zeros((0, 4), np.float32), "text": np.array([b"a", b"bc"])}
    with h5py.File(path, "w") as f:
        f.create_dataset("plain", data=data["plain"])
        f.create_dataset("group/halves", data=data["halves"])
        f.create_dataset("chunked", data=data["chunked"], chunks=(512,))
        f.create_dataset("gzip", data=data["gzip"], compression="gzip")
        f.create_dataset("empty", data=data["empty"])
        f.create_dataset("text", data=data["text"])
    return path, data


def test_contiguous_datasets_are_read_only_views_equal_to_h5py(mixed_file):
    path, data = mixed_file
    with h5py.File(path, "r") as f, ContiguousViews(f, path) as views:
        plain, halves = views.get("plain"), views.get("group/halves")
        np.testing.assert_array_equal(plain, data["plain"])
        np.testing.assert_array_equal(halves, data["halves"])
        assert plain.dtype == np.float32 and halves.dtype == np.float16
        assert not plain.flags.writeable
        with pytest.raises(ValueError):
            plain[0, 0] = 1.0


@pytest.mark.parametrize("name", ["chunked", "gzip", "empty", "text"])
def test_datasets_without_a_plain_byte_range_have_no_view(mixed_file, name):
    path, _ = mixed_file
    with h5py.File(path, "r") as f, ContiguousViews(f, path) as views:
        assert views.get(name) is None


def test_closing_while_a_view_is_still_used_keeps_the_view_valid(mixed_file):
    path, data = mixed_file
    with h5py.File(path, "r") as f:
        views = ContiguousViews(f, path)
        kept = views.get("plain")[10:20]
        views.close()
    np.testing.assert_array_equal(kept, data["plain"][10:20])


def test_a_file_system_that_cannot_map_files_gives_no_views(mixed_file, monkeypatch):
    import mmap

    def refuse(*args, **kwargs):
        raise OSError(19, "No such device")

    monkeypatch.setattr(mmap, "mmap", refuse)
    path, _ = mixed_file
    with h5py.File(path, "r") as f, ContiguousViews(f, path) as views:
        assert views.get("plain") is None


def _mapped_kib(path) -> int:
    """Resident KiB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith(str(path))
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


def test_release_lets_go_of_the_pages_read_and_keeps_the_views_valid(mixed_file):
    import os

    path, data = mixed_file
    if not os.path.exists("/proc/self/smaps"):
        pytest.skip("no /proc/self/smaps")
    with h5py.File(path, "r") as f, ContiguousViews(f, path) as views:
        plain = views.get("plain")
        assert float(plain.sum()) == pytest.approx(float(data["plain"].sum()), rel=1e-5)
        assert _mapped_kib(path) > 0
        assert views.release()
        assert _mapped_kib(path) == 0
        np.testing.assert_array_equal(plain, data["plain"])
