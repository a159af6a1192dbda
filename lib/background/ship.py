"""The conditions store shipped with the package (``lib/background/payloads``, installed as
``tracerflow/background/payloads``), and how it is built.

    python -m tracerflow.background.ship [DIRECTORY]

What it builds: one payload, ``BackgroundGenerator_<model>`` revision 1 under the default global tag,
where model, global tag, geometry, physics and fit settings are the defaults of the schema's
``background`` block (:data:`tracerflow.config.schema.BACKGROUND`, read here, never restated) and the
generator's seed follows from the default ``project.seed`` by Belle II's sha512 rule (the block's
``seed`` is null). With today's defaults that is ``BackgroundGenerator_clusters`` for the default
geometry (10 sensors of 32 x 96) under ``tracerflow-background``.

Contract: the shipped store holds exactly the payload that TrainBackgroundGenerator puts into a
project's store for a config whose ``background`` block is all defaults (at ``project.seed`` 42):
both make it with :func:`tracerflow.background.train.fit_payload` and write it with
:meth:`tracerflow.background.conditions.ConditionsStore.put` into an empty store, so the payload file
and its index entry (sha256, size, metadata) are the same bytes. ``BackgroundGenerator()`` with every
default (model, ``checkpoint=None``, no ``store``) loads it. Rebuilding is deterministic: the same
defaults and the same (pinned) torch give byte-identical ``index.json`` and payload files (a test
rebuilds and compares); change a default of the block and the shipped store must be rebuilt.

Rebuilding into a directory replaces the store there (its ``index.json`` and the global tags'
directories its old index names, and those of the new one) with the new one, built first in a
temporary directory beside it, the index moved in last; other files there are left alone.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from tracerflow.background.conditions import INDEX_NAME, SHIPPED_DIR, ConditionsStore
from tracerflow.config.schema import BACKGROUND, BLOCKS
from tracerflow.config.spec import Context

#: Where the shipped store lies in the source tree (and in an installed package).
SHIPPED_ROOT = Path(__file__).resolve().parent / SHIPPED_DIR
#: The framework seed (``project.seed``) the shipped payload is made with: the schema's default.
FRAMEWORK_SEED: int = BLOCKS.fields["project"].fields["seed"].default


def default_block() -> dict[str, Any]:
    """The ``background`` block with every key at its default, as the config loader fills it."""
    return BACKGROUND.validate({}, "background", Context("<the background block's defaults>"))


def build(root: str | Path, progress: Callable[[float, str], None] | None = None) -> Path:
    """Make the default block's payload and put it as revision 1 into the empty store at ``root``
    (created; a store already holding payloads is refused); returns the payload file."""
    from tracerflow.background.generator import payload_name
    from tracerflow.background.train import fit_payload

    store = ConditionsStore(root)
    if store.index_path.exists() and store.globaltags():
        raise FileExistsError(f"conditions store {store.root} already holds payloads: build into an empty directory")
    block = default_block()
    model, _, metadata = fit_payload(block, FRAMEWORK_SEED, progress=progress)
    revision = store.put(block["globaltag"], payload_name(block["model"]), model.state_dict(), metadata)
    return store.get(block["globaltag"], payload_name(block["model"]), revision).path


def rebuild(target: str | Path = SHIPPED_ROOT, progress: Callable[[float, str], None] | None = None) -> Path:
    """Build the shipped store afresh and put it in place of the store at ``target`` (see the
    module docstring); returns the payload file there."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-build-") as scratch:
        fresh = ConditionsStore(Path(scratch) / "store")
        payload = build(fresh.root, progress)
        old_tags = ConditionsStore(target).globaltags() if (target / INDEX_NAME).exists() else []
        (target / INDEX_NAME).unlink(missing_ok=True)  # first: no index names a payload being replaced
        for tag in sorted(set(old_tags) | set(fresh.globaltags())):
            shutil.rmtree(target / tag, ignore_errors=True)
        for tag in fresh.globaltags():
            (fresh.root / tag).rename(target / tag)
        fresh.index_path.replace(target / INDEX_NAME)
    return target / payload.relative_to(fresh.root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tracerflow.background.ship",
        description="(Re)build the background generator's shipped conditions store: the default background "
                    "block's payload, made as TrainBackgroundGenerator makes it (deterministic).")
    parser.add_argument("directory", nargs="?", type=Path, default=SHIPPED_ROOT,
                        help=f"the store to (re)build (default: {SHIPPED_ROOT})")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def progress(done: float, text: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {text}", file=sys.stderr, flush=True)

    payload = rebuild(args.directory, progress)
    data = payload.read_bytes()
    print(f"{payload}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}, "
          f"built in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
