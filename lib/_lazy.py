"""Package namespaces that import their modules on first use (PEP 562).

A package ``__init__`` that re-exported every name from its modules would import them all, and
with them torch, numba or scipy, whenever any one of its modules is imported: the command line,
``tracerflow show`` and every task's process would pay for the heaviest stage. A package lists
its public names with the module that defines each, and :func:`lazy_exports` returns the
``__getattr__`` and ``__dir__`` that import a module when one of its names is first asked for.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping, Sequence


def lazy_exports(package: str, modules: Mapping[str, Sequence[str]]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package`` exporting, from each module (relative name,
    e.g. ``".scaling"``), the names listed for it."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        globals_of(package)[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals_of(package)) | set(where))

    return __getattr__, __dir__


def globals_of(package: str) -> dict:
    """The namespace of the (imported) ``package``."""
    return vars(sys.modules[package])
