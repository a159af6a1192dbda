"""A small declarative schema for config blocks: types, defaults, choices, closed blocks.

Validation returns a normalised copy (defaults filled in) or raises :class:`ConfigError`
naming the config file, the dotted key path and what was expected; unknown keys get a
"did you mean" from the known ones.
"""
from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping

REQUIRED = object()


class ConfigError(ValueError):
    """A config that cannot run: names the file, the dotted key and what was expected."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source, self.key, self.message = source, key, message
        super().__init__(f"{source}: {key or '<top level>'}: {message}")


@dataclass
class Context:
    """Where validation is: the config file's name, for messages."""

    source: str

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(self.source, key, message)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class Spec(ABC):
    """Base of all specs: ``validate(value, path, ctx)`` returns the normalised value."""

    default: Any = REQUIRED
    doc: str = ""

    @abstractmethod
    def validate(self, value: Any, path: str, ctx: Context) -> Any:
        """Check ``value`` found at ``path``; return it normalised or raise ConfigError."""

    def default_value(self, path: str, ctx: Context) -> Any:
        if self.default is REQUIRED:
            ctx.fail(path, f"is required ({self.describe()})")
        return self.default() if callable(self.default) else self.default

    def describe(self) -> str:
        return type(self).__name__


@dataclass
class Scalar(Spec):
    """One value of the given Python types, with optional choices, bounds and a custom check."""

    types: tuple[type, ...]
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    check: Callable[[Any], str | None] | None = None
    nullable: bool = False
    doc: str = ""

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        names = " or ".join(t.__name__ for t in self.types)
        bound = f" >= {self.minimum}" if self.minimum is not None else ""
        return f"{names}{bound}" + (" or null" if self.nullable else "")

    def validate(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None and (self.nullable or (self.choices is not None and None in self.choices)):
            return None
        if float in self.types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in self.types:
            ctx.fail(path, f"expected {self.describe()}, got {value!r}")
        if not isinstance(value, self.types):
            ctx.fail(path, f"expected {self.describe()}, got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            ctx.fail(path, f"expected {self.describe()}, got {value!r}{hint}")
        if self.minimum is not None and value < self.minimum:
            ctx.fail(path, f"expected {self.describe()}, got {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                ctx.fail(path, problem)
        return value


@dataclass
class ListOf(Spec):
    """A list whose items all follow ``item``; ``length`` fixes its size."""

    item: Spec
    default: Any = REQUIRED
    length: int | None = None
    nullable: bool = False
    doc: str = ""

    def describe(self) -> str:
        size = f" of length {self.length}" if self.length else ""
        return f"a list{size} of {self.item.describe()}" + (" or null" if self.nullable else "")

    def validate(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None and self.nullable:
            return None
        if not isinstance(value, (list, tuple)):
            ctx.fail(path, f"expected {self.describe()}, got {type(value).__name__} {value!r}")
        if self.length is not None and len(value) != self.length:
            ctx.fail(path, f"expected {self.describe()}, got {len(value)} items")
        return [self.item.validate(v, f"{path}[{i}]", ctx) for i, v in enumerate(value)]


@dataclass
class MapOf(Spec):
    """A mapping from free names to values following ``value``; ``key_check`` returns what is wrong
    with a name (None when it is fine)."""

    value: Spec
    default: Any = dict
    doc: str = ""
    key_check: Callable[[str], str | None] | None = None

    def describe(self) -> str:
        return f"a mapping of names to {self.value.describe()}"

    def validate(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            ctx.fail(path, f"expected {self.describe()}, got {type(value).__name__} {value!r}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                ctx.fail(_join(path, key), "keys must be strings")
            problem = self.key_check(key) if self.key_check is not None else None
            if problem:
                ctx.fail(_join(path, key), problem)
            out[key] = self.value.validate(item, _join(path, key), ctx)
        return out


@dataclass
class Block(Spec):
    """A closed mapping: known keys only, each with its own spec and default."""

    fields: dict[str, Spec]
    default: Any = dict
    nullable: bool = False
    check: Callable[[dict, str, Context], None] | None = None
    doc: str = ""

    def describe(self) -> str:
        return "a block with keys " + ", ".join(self.fields)

    def default_value(self, path: str, ctx: Context) -> Any:
        if self.default is None:
            return None
        return self.validate({}, path, ctx)

    def validate(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None and self.nullable:
            return None
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            ctx.fail(path, f"expected {self.describe()}, got {type(value).__name__} {value!r}")
        for key in value:
            if key not in self.fields:
                close = difflib.get_close_matches(str(key), list(self.fields), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(self.fields)}"
                ctx.fail(_join(path, key), f"unknown key{hint}")
        out = {}
        for key, spec in self.fields.items():
            sub = _join(path, key)
            out[key] = spec.validate(value[key], sub, ctx) if key in value else spec.default_value(sub, ctx)
        if self.check is not None:
            self.check(out, path, ctx)
        return out


@dataclass
class OneOf(Spec):
    """The first of ``options`` that accepts the value (e.g. a class path or a declared block)."""

    options: tuple[Spec, ...]
    default: Any = REQUIRED
    doc: str = ""

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)

    def validate(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None and self.default is None:
            return None  # a null default is a valid value: validating a normalised config gives it back
        errors = []
        for option in self.options:
            try:
                return option.validate(value, path, ctx)
            except ConfigError as err:
                errors.append(err)
        deepest = max(errors, key=lambda e: len(e.key))
        if deepest.key != path:
            raise deepest
        fitting = [err for option, err in zip(self.options, errors)
                   if isinstance(option, Scalar) and isinstance(value, option.types)]
        if len(fitting) == 1:  # the value has the one option's type but not its form: say what is wrong
            raise fitting[0]
        ctx.fail(path, f"expected {self.describe()}, got {type(value).__name__}")


@dataclass
class Partial(Spec):
    """Some keys of ``block``, each validated by its spec, none filled in: an override of a block
    whose missing keys come from elsewhere; null (the default) overrides nothing."""

    block: Block
    default: Any = None
    doc: str = ""

    def describe(self) -> str:
        return "a block with some of the keys " + ", ".join(self.block.fields)

    def validate(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            ctx.fail(path, f"expected {self.describe()}, got {type(value).__name__} {value!r}")
        for key in value:
            if key not in self.block.fields:
                close = difflib.get_close_matches(str(key), list(self.block.fields), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(self.block.fields)}"
                ctx.fail(_join(path, key), f"unknown key{hint}")
        return {key: self.block.fields[key].validate(item, _join(path, key), ctx) for key, item in value.items()}
