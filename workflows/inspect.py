"""``tracerflow show``: the DAG as an indented tree with each target's state, and for a task
that ran as a batch job (``tracerflow run --batch``), its job id, state and log."""
from __future__ import annotations

import json

import luigi
from luigi.task import flatten

from tracerflow.io.provenance import UPSTREAM, changed_upstream, differences, read_record, summary
from tracerflow.workflows.batch import records as batch_records

STALE = "config changed"


def _state(task: luigi.Task) -> str:
    outputs = flatten(task.output())
    if not outputs:
        return "done" if task.complete() else "pending"
    reasons = set()
    for output in outputs:
        reason = output.status() if hasattr(output, "status") else ("ok" if output.exists() else "missing")
        reasons.add(_why_stale(task, output) if reason == STALE else reason)
    return "done" if reasons == {"ok"} else "pending (" + ", ".join(sorted(reasons - {"ok"})) + ")"


def _why_stale(task: luigi.Task, output: luigi.Target) -> str:
    """What changed since ``output`` was made: config keys (old -> new), input files, upstream
    targets, from the provenance record of the digest the file carries."""
    stored = output.stored_digest()
    old = read_record(task.cfg.output_root, stored) if stored else None
    if old is None:
        return "stale: made from another config (no record of which)"
    current = task.cfg.payload(output.digest)
    new = json.loads(current) if current else {}
    lines = differences(old, new)
    upstream = [(_label(dep), digest) for dep in flatten(task.requires()) if hasattr(dep, "output_digests")
                for digest in dep.output_digests()]
    changed = list(dict.fromkeys(changed_upstream(old, upstream)))
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        lines.append(f"upstream {', '.join(changed[:3])}{more} changed")
    if not lines and old.get(UPSTREAM) != new.get(UPSTREAM):
        lines.append("an upstream target changed")
    return "stale: " + (summary(lines) if lines else "made from another config")


def roots(tasks: list[luigi.Task]) -> list[luigi.Task]:
    """Of ``tasks``, those no other of them requires (directly or not): where the DAG ends."""
    below: set[str] = set()

    def mark(task: luigi.Task) -> None:
        for dep in flatten(task.requires()):
            if dep.task_id not in below:
                below.add(dep.task_id)
                mark(dep)

    for task in tasks:
        if task.task_id not in below:
            mark(task)
    return [t for t in tasks if t.task_id not in below]


def describe_dag(root: luigi.Task) -> str:
    """Every task below ``root`` once, indented by depth, with done/pending and the target path
    (the first of several, with their count)."""
    lines: list[str] = []
    states: dict[str, str] = {}

    def visit(task: luigi.Task, depth: int) -> None:
        label = _label(task)
        if task.task_id in states:
            lines.append(f"{'  ' * depth}{label}  (see above)")
            return
        states[task.task_id] = state = _state(task)
        outputs = [o for o in flatten(task.output()) if hasattr(o, "path")]
        where = f"  -> {outputs[0].path}" if outputs else ""
        where += f" (+{len(outputs) - 1} more)" if len(outputs) > 1 else ""
        lines.append(f"{'  ' * depth}[{state}] {label}{where}")
        job = batch_records.describe(task)
        if job is not None:
            lines.append(f"{'  ' * depth}    ran as {job}")
        for dep in flatten(task.requires()):
            visit(dep, depth + 1)

    states[root.task_id] = "pending"
    for task in roots(flatten(root.requires())):
        visit(task, 1)
    # A wrapper (no outputs of its own) is done when what it requires is: read from the states
    # just found rather than asking every target again.
    if flatten(root.output()) or not isinstance(root, luigi.WrapperTask):
        root_state = _state(root)
    else:
        root_state = "done" if all(states.get(dep.task_id) == "done" for dep in flatten(root.requires())) \
            else "pending"
    lines.insert(0, f"[{root_state}] {_label(root)}")
    done = sum(1 for line in lines if "[done]" in line)
    total = sum(1 for line in lines if line.lstrip().startswith("["))
    lines.append(f"{done}/{total} tasks complete")
    return "\n".join(lines)


def _label(task: luigi.Task) -> str:
    return task.label() if hasattr(task, "label") else str(task)
