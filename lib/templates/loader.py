"""Turn the ``template`` key of a config block into a template instance.

A string ``module:Class`` imports a Python subclass; a mapping is a template declared in the
YAML itself, so that reading a foreign ntuple needs no Python.

A config names only modules it may import (:class:`TemplateModules`): tracerflow's own, modules
whose file lies below the config file's directory, and the modules (with their submodules) listed
in ``project.template_modules``. Whether a module is one of them is found without executing
anything, so a config naming any other module is refused before that module runs.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracerflow.templates import event, graph, selection

BASES = {"event": event.EventTemplate, "graph": graph.GraphTemplate, "selection": selection.SelectionTemplate}
DECLARED = {"event": event.declared, "graph": graph.declared, "selection": selection.declared}
PACKAGE = "tracerflow"
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class TemplateModules:
    """The modules a config's ``module:Class`` templates may come from: tracerflow's, those whose
    file lies below ``base_dir`` (the config file's directory) and those named in ``allowed``
    (``project.template_modules``), each with its submodules."""

    base_dir: Path | None = None
    allowed: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: Any) -> "TemplateModules | None":
        """The modules a config loaded from a file (a :class:`~tracerflow.config.Config`) may name;
        None for blocks built in Python, whose class paths are the calling code's own."""
        base_dir = getattr(config, "base_dir", None)
        if base_dir is None:
            return None
        return cls(base_dir, tuple(config["project"]["template_modules"]))

    def refusal(self, module_name: str) -> str | None:
        """Why ``module_name`` may not be imported for this config; None when it may. Imports nothing."""
        if not MODULE_NAME.fullmatch(module_name):
            return f"{module_name!r} is not a module name"
        if _within(module_name, (PACKAGE, *self.allowed)) or self.below_config(module_name) is not None:
            return None
        where = f"below the config's directory {self.base_dir}" if self.base_dir is not None else \
            "below the config's directory"
        return (f"module {module_name!r} is not one a config may name: templates come from tracerflow's modules, "
                f"modules {where}, or the modules listed in project.template_modules "
                f"(now: {', '.join(self.allowed) or 'none'})")

    def below_config(self, module_name: str) -> Path | None:
        """The file of ``module_name`` when it lies below the config's directory, found by searching
        that directory as the import system would, without executing any module."""
        if self.base_dir is None:
            return None
        base = Path(self.base_dir).resolve()
        importlib.invalidate_caches()
        search: list[str] | None = [str(base)]
        parts = module_name.split(".")
        spec = None
        for i in range(len(parts)):
            if not search:
                return None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), search)
            if spec is None:
                return None
            search = list(spec.submodule_search_locations or [])
        origin = spec.origin if spec.origin not in (None, "namespace") else (search[0] if search else None)
        if origin is None:
            return None
        path = Path(origin).resolve()
        return path if path.is_relative_to(base) else None

    def import_module(self, module_name: str) -> Any:
        """Import ``module_name``; refuses a module this config may not name without importing it."""
        problem = self.refusal(module_name)
        if problem:
            raise ImportError(problem)
        if _within(module_name, (PACKAGE, *self.allowed)):
            return importlib.import_module(module_name)
        own = self.below_config(module_name)
        loaded = sys.modules.get(module_name)
        if loaded is None:
            sys.path.insert(0, str(Path(self.base_dir).resolve()))
            try:
                loaded = importlib.import_module(module_name)
            finally:
                sys.path.remove(str(Path(self.base_dir).resolve()))
        found = getattr(loaded, "__file__", None)
        if found is None or Path(found).resolve() != own:
            raise ImportError(f"module {module_name!r} of the config's directory ({own}) has the name of another "
                              f"module, already imported from {found or 'a built-in'}; rename it")
        return loaded


def _within(module_name: str, roots: tuple[str, ...]) -> bool:
    return any(module_name == root or module_name.startswith(root + ".") for root in roots)


def import_class(path: str, modules: TemplateModules | None = None) -> type:
    """Import ``module:Class``, from a module ``modules`` allows when given; errors say which part failed."""
    module_name, _, class_name = path.partition(":")
    try:
        module = modules.import_module(module_name) if modules is not None else importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import module {module_name!r} of {path!r}: {err}") from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no {class_name!r}") from None


def build_template(block: str, spec: Any, modules: TemplateModules | None = None) -> Any:
    """Instantiate the ``block`` template ('event', 'graph' or 'selection') from its config value
    (a class path from one of ``modules``, or a declared block)."""
    if isinstance(spec, str):
        cls = import_class(spec, modules)
        if not (isinstance(cls, type) and issubclass(cls, BASES[block])):
            raise TypeError(f"{spec!r} is not a {BASES[block].__name__} subclass")
        return cls()
    return DECLARED[block](spec)


def load_template(config: Any, block: str, sample: str | None = None) -> Any:
    """The template instance of a validated config's ``block``; for ``event`` and ``selection``, as
    ``sample`` sees it when given (a sample may override them: ``samples.<name>.<block>``). A class
    path of a config loaded from a file comes from a module that config may name."""
    modules = TemplateModules.of(config)
    if sample is not None and block in ("event", "selection"):
        return build_template(block, config.block_for(block, sample)["template"], modules)
    return build_template(block, config[block]["template"], modules)
