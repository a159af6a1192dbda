"""Read a fold file one fold at a time, as LUMIN's FoldYielder does, with features to ignore."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np

from tracerflow.io.h5target import check_schema
from tracerflow.write.appender import read_text
from tracerflow.write.fold_file import SCHEMA, SCHEMA_VERSION


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


class FoldYielder:
    """Folds of a fold file as dicts of arrays.

    Ignored features are dropped from ``inputs`` (continuous and categorical features) and from
    the last axis of ``matrix_inputs`` (matrix features); ``cont_feats``, ``cat_feats`` and
    ``matrix_feats`` list what remains, ``orig_*`` what the file holds. With ``nan_to_num``
    NaNs in ``inputs`` and ``matrix_inputs`` (padding slots included) become 0.
    """

    def __init__(self, path: str | os.PathLike, ignore_feats: Iterable[str] = (), nan_to_num: bool = False) -> None:
        self.path = Path(path)
        self.source = h5py.File(self.path, "r")
        check_schema(self.source, SCHEMA, SCHEMA_VERSION)
        self.nan_to_num = nan_to_num
        meta = self.source["meta_data"]
        self.orig_cont_feats: list[str] = json.loads(read_text(meta, "cont_feats"))
        self.orig_cat_feats: list[str] = json.loads(read_text(meta, "cat_feats"))
        self.targ_feats: list[str] = _as_list(json.loads(read_text(meta, "targ_feats")))
        self.wgt_feat: str | None = json.loads(read_text(meta, "wgt_feat")) if "wgt_feat" in meta else None
        self.matrix_meta: dict[str, Any] | None = (
            json.loads(read_text(meta, "matrix_feats")) if "matrix_feats" in meta else None
        )
        self.orig_matrix_feats: list[str] = list(self.matrix_meta["feats_per_vec"]) if self.matrix_meta else []
        self.n_folds = sum(1 for name in self.source if name.startswith("fold_"))
        self._ignore: list[str] = []
        self.add_ignore(ignore_feats)

    def __len__(self) -> int:
        return self.n_folds

    def __getitem__(self, idx: int) -> dict[str, np.ndarray]:
        return self.get_fold(idx)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.n_folds):
            yield self.get_fold(i)

    def __enter__(self) -> "FoldYielder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.source.close()

    @property
    def input_feats(self) -> list[str]:
        """Columns of ``inputs`` as returned: continuous then categorical, without ignored ones."""
        return self.cont_feats + self.cat_feats

    @property
    def cont_feats(self) -> list[str]:
        return [f for f in self.orig_cont_feats if f not in self._ignore]

    @property
    def cat_feats(self) -> list[str]:
        return [f for f in self.orig_cat_feats if f not in self._ignore]

    @property
    def matrix_feats(self) -> list[str]:
        return [f for f in self.orig_matrix_feats if f not in self._ignore]

    def get_ignore(self) -> list[str]:
        return list(self._ignore)

    def add_ignore(self, feats: str | Iterable[str]) -> None:
        """Leave ``feats`` out of the inputs from now on; names the file lacks raise ``KeyError``."""
        known = set(self.orig_cont_feats) | set(self.orig_cat_feats) | set(self.orig_matrix_feats)
        for feat in _as_list(feats):
            if feat not in known:
                raise KeyError(f"{feat!r} is not an input feature of {self.path}")
            if feat not in self._ignore:
                self._ignore.append(feat)

    def fold_size(self, idx: int) -> int:
        return int(self.source[f"fold_{self._check(idx)}/weights"].shape[0])

    def _check(self, idx: int) -> int:
        if not -self.n_folds <= idx < self.n_folds:
            raise IndexError(f"fold {idx} out of range: the file has {self.n_folds} folds")
        return idx % self.n_folds

    def _inputs(self, data: np.ndarray) -> np.ndarray:
        keep = [i for i, f in enumerate(self.orig_cont_feats + self.orig_cat_feats) if f not in self._ignore]
        if len(keep) != data.shape[1]:
            data = data[:, keep]
        return np.nan_to_num(data) if self.nan_to_num else data

    def _matrix(self, data: np.ndarray) -> np.ndarray:
        keep = [i for i, f in enumerate(self.orig_matrix_feats) if f not in self._ignore]
        if len(keep) != data.shape[-1]:
            data = data[..., keep]
        return np.nan_to_num(data) if self.nan_to_num else data

    def get_fold(self, idx: int) -> dict[str, np.ndarray]:
        """``inputs``, ``targets``, ``weights``, ``hash`` and, with tracks, ``matrix_inputs`` and ``matrix_valid``."""
        grp = self.source[f"fold_{self._check(idx)}"]
        out = {
            "inputs": self._inputs(grp["inputs"][()]),
            "targets": grp["targets"][()],
            "weights": grp["weights"][()],
            "hash": grp["hash"][()],
        }
        if "matrix_inputs" in grp:
            out["matrix_inputs"] = self._matrix(grp["matrix_inputs"][()])
            out["matrix_valid"] = grp["matrix_valid"][()]
        return out

    def get_column(self, column: str, n_folds: int | None = None, fold_idx: int | None = None) -> np.ndarray | None:
        """A dataset (``targets``, ``weights``, ``hash``, ...) or an input feature, over folds.

        ``fold_idx`` picks one fold; otherwise the first ``n_folds`` folds (all by default) are
        concatenated. Returns None when no fold has such a column.
        """
        if fold_idx is not None:
            folds = [self._check(fold_idx)]
        else:
            folds = range(self.n_folds if n_folds is None else min(n_folds, self.n_folds))
        input_cols = self.orig_cont_feats + self.orig_cat_feats
        parts = []
        for i in folds:
            grp = self.source[f"fold_{i}"]
            if column in grp:
                data = grp[column][()]
                if column == "inputs":
                    data = self._inputs(data)
                elif column == "matrix_inputs":
                    data = self._matrix(data)
            elif column in input_cols:
                data = grp["inputs"][:, input_cols.index(column)]
                data = np.nan_to_num(data) if self.nan_to_num else data
            else:
                return None
            parts.append(data)
        return np.concatenate(parts) if parts else None
