"""Turn the ``template`` key of a config block into a template instance.

A string ``module:Class`` imports a Python subclass; a mapping is a template declared in the
YAML itself, so that reading a foreign ntuple needs no Python.
"""
from __future__ import annotations

import importlib
from typing import Any

from tracerflow.templates import event, graph, selection

BASES = {"event": event.EventTemplate, "graph": graph.GraphTemplate, "selection": selection.SelectionTemplate}
DECLARED = {"event": event.declared, "graph": graph.declared, "selection": selection.declared}


def import_class(path: str) -> type:
    """Import ``module:Class``; errors say which part failed."""
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import module {module_name!r} of {path!r}: {err}") from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no {class_name!r}") from None


def build_template(block: str, spec: Any) -> Any:
    """Instantiate the ``block`` template ('event', 'graph' or 'selection') from its config value."""
    if isinstance(spec, str):
        cls = import_class(spec)
        if not (isinstance(cls, type) and issubclass(cls, BASES[block])):
            raise TypeError(f"{spec!r} is not a {BASES[block].__name__} subclass")
        return cls()
    return DECLARED[block](spec)


def load_template(config: Any, block: str, sample: str | None = None) -> Any:
    """The template instance of a validated config's ``block``; for ``event`` and ``selection``, as
    ``sample`` sees it when given (a sample may override them: ``samples.<name>.<block>``)."""
    if sample is not None and block in ("event", "selection"):
        return build_template(block, config.block_for(block, sample)["template"])
    return build_template(block, config[block]["template"])
