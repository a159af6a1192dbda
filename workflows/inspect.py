"""``tracerflow show``: the DAG as an indented tree with each target's state."""
from __future__ import annotations

import luigi
from luigi.task import flatten


def _state(task: luigi.Task) -> str:
    outputs = flatten(task.output())
    if not outputs:
        return "done" if task.complete() else "pending"
    reasons = {o.status() if hasattr(o, "status") else ("ok" if o.exists() else "missing") for o in outputs}
    return "done" if reasons == {"ok"} else "pending (" + ", ".join(sorted(reasons - {"ok"})) + ")"


def describe_dag(root: luigi.Task) -> str:
    """Every task below ``root`` once, indented by depth, with done/pending and the target path."""
    lines: list[str] = []
    seen: set[str] = set()

    def visit(task: luigi.Task, depth: int) -> None:
        label = _label(task)
        if task.task_id in seen:
            lines.append(f"{'  ' * depth}{label}  (see above)")
            return
        seen.add(task.task_id)
        outputs = flatten(task.output())
        where = f"  -> {outputs[0].path}" if outputs and hasattr(outputs[0], "path") else ""
        lines.append(f"{'  ' * depth}[{_state(task)}] {label}{where}")
        for dep in flatten(task.requires()):
            visit(dep, depth + 1)

    visit(root, 0)
    done = sum(1 for line in lines if "[done]" in line)
    total = sum(1 for line in lines if line.lstrip().startswith("["))
    lines.append(f"{done}/{total} tasks complete")
    return "\n".join(lines)


def _label(task: luigi.Task) -> str:
    params = task.to_str_params(only_significant=True)
    shown = {k: v for k, v in params.items() if k not in ("config", "overrides")}
    return f"{task.get_task_family()}({', '.join(f'{k}={v}' for k, v in shown.items())})"
