"""Checks of the templates against each other, run by :func:`~tracerflow.config.load_config`.

Expressions of the graph and selection templates are read against what the event template
makes (of every sample, where samples bring their own): their levels, the fields each level
has, and the kind of value each field holds. A config is refused, naming the key, when

- the graph's nodes are not at or below the graph level (``graph.template.nodes``);
- an expression reads a collection or field that no event template declares;
- a name or a reduction (``sum max min count at``) is not on the expression's level, one of
  its ancestors, or (for reductions) a collection below it: a sibling or a descendant read
  without a reduction would fail on the first chunk;
- ``resample.label`` names a selection output whose expression is float-valued while
  ``resample.classes`` maps class names to integers.

Kinds are ``bool``, ``int``, ``float``, ``str`` or ``unknown``. ROOT branches count as
``unknown`` (their type is the file's), except four-vector components and added kinematics,
which are ``float``; so is anything with ``/``, a float constant or function (``sqrt``,
``log``, ...), and the reductions but ``count``. Python templates are read through what the
class declares (``leaves``, ``collections``, ``derived``); one that overrides ``derive`` may
add fields no declaration shows, so unknown names of its events are let through.
"""
from __future__ import annotations

import ast
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from tracerflow.config.spec import Context
from tracerflow.templates.expressions import dotted

EVENT = "event"
EDGES = "<edges>"
BOOL, INT, FLOAT, STR, UNKNOWN = "bool", "int", "float", "str", "unknown"
INDEX_KINDS = {"hash": INT, "file": INT, "entry": INT, "sample": STR}
FLOAT_FUNCTIONS = {"sqrt", "log", "log10", "log1p", "exp", "sin", "cos", "tan", "arctan2", "arcsinh", "sinh", "cosh",
                   "tanh", "hypot", "delta_phi", "delta_r"}
BOOL_FUNCTIONS = {"isnan", "isfinite"}
SAME_KIND_FUNCTIONS = {"abs", "sign", "minimum", "maximum", "clip"}
REDUCTIONS = {"count", "sum", "max", "min", "at"}
NAMED_CONSTANTS = {"pi": FLOAT, "inf": FLOAT, "nan": FLOAT, "true": BOOL, "false": BOOL}
GENERATOR_WEIGHT = "generator_weight"  # the event field BuildEvents adds for event.generator_weight


class _Problem(Exception):
    """What is wrong with one expression; the caller adds the key and the expression."""


@dataclass
class Fields:
    """What one event template makes: collections with their parents, and each level's fields."""

    where: str
    parents: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    open: bool = False
    samples: tuple[str, ...] = ()  # the config's sample names, which ``sample`` compares with

    def has_level(self, level: str) -> bool:
        return level == EVENT or level in self.parents

    def chain(self, level: str) -> list[str] | None:
        """``level`` and its ancestors up to the event; None where a level is not declared."""
        out = [level]
        while level != EVENT:
            if level not in self.parents or len(out) > len(self.parents) + 1:
                return None
            level = self.parents[level]
            out.append(level)
        return out

    def levels(self) -> list[str]:
        return [EVENT, *self.parents]


# ------------------------------------------------------------------ event templates -> Fields

def event_fields(spec: Any, key: str = "event.template", where: str = "the event template",
                 modules: Any = None) -> Fields:
    """The Fields of an event template: a declared block, a ``module:Class`` path or the class.

    ``key`` is the template's config key and ``where`` how messages name it; a derived field
    that cannot be computed raises ValueError starting with the key of its expression. A class
    path is imported from ``modules`` (the TemplateModules of the config that names it) when given.
    """
    from tracerflow.templates.event import EventTemplate
    from tracerflow.templates.fourvector import CONVENTIONS, DEFAULT_ADDED
    from tracerflow.templates.loader import import_class

    if isinstance(spec, (str, type)):
        cls = import_class(spec, modules) if isinstance(spec, str) else spec
        leaves, derived = dict(cls.leaves), dict(cls.derived)
        collections = {name: {"branches": dict(c.branches), "members": c.members, "four_vector": c.four_vector,
                              "kinematics": c.kinematics, "parent": c.parent} for name, c in cls.collections.items()}
        is_open = cls.derive is not EventTemplate.derive
    else:
        leaves, derived = dict(spec.get("leaves") or {}), dict(spec.get("derived") or {})
        collections = dict(spec.get("collections") or {})
        is_open = False
    out = Fields(where=where, open=is_open)
    out.kinds[EVENT] = {**INDEX_KINDS, **{name: UNKNOWN for name in leaves}}
    for name, coll in collections.items():
        out.parents[name] = coll.get("parent") or EVENT
        attrs = dict(coll.get("branches") or {}) or dict((coll.get("members") or [{}])[0])
        kinds = {attr: UNKNOWN for attr in attrs}
        convention = coll.get("four_vector")
        if convention in CONVENTIONS:
            added = coll.get("kinematics")
            components = [attr for attr in CONVENTIONS[convention] if attr in kinds]
            for attr in (*components, *(added if added is not None else DEFAULT_ADDED[convention])):
                kinds[attr] = FLOAT
        out.kinds[name] = kinds
    for target, text in derived.items():
        level, _, name = target.rpartition(".")
        level = level or EVENT
        declared = isinstance(spec, Mapping)
        expr = _Expr(f"{key}.derived.{target}" if declared else key, "" if declared else f"derived.{target}: ",
                     str(text), level)
        kind = _kind_or_fail(out, expr)
        if out.has_level(level):
            out.kinds.setdefault(level, {})[name] = kind
    return out


# ------------------------------------------------------------------ expressions

class _Walk:
    """Checks the names and levels of one expression and infers the kind of its value."""

    def __init__(self, fields: Fields, nodes: str | None = None) -> None:
        self.fields = fields
        self.nodes = nodes  # the node collection, for src./dst. names of edge features

    def kind(self, node: ast.AST, level: str) -> str:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is not None:
            return method(node, level)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.kind(child, level)
        return UNKNOWN

    # names -------------------------------------------------------------
    def name(self, name: str, level: str) -> str:
        if level == EDGES:
            end, _, rest = name.partition(".")
            if end not in ("src", "dst") or not rest:
                raise _Problem(f"{name!r}: edge features read src.<field> or dst.<field>")
            return self.name(rest if "." in rest else f"{self.nodes}.{rest}", self.nodes)
        coll, _, attr = name.rpartition(".")
        owner = coll or EVENT
        fields = self.fields
        if not fields.has_level(owner):
            if fields.open:
                return UNKNOWN
            raise _Problem(f"{name!r}: {fields.where} has no collection {coll!r}{_have(fields.levels()[1:], coll)}")
        kinds = fields.kinds.get(owner, {})
        if attr not in kinds:
            if fields.open:
                return UNKNOWN
            what = f"event field {attr!r}" if owner == EVENT else f"field {attr!r} on {owner}"
            raise _Problem(f"{name!r}: {fields.where} declares no {what}{_have(kinds, attr)}")
        chain = fields.chain(level)
        if chain is not None and owner not in chain:
            below = fields.chain(owner)
            if below is not None and level in below:
                hint = f"reduce it to one value per {level} row (sum, max, min, count, at)"
            else:
                hint = f"{owner!r} is neither {level!r} nor above it ({' -> '.join(chain)})"
            raise _Problem(f"{name!r} lives on {owner!r}, not on the level {level!r} or above it: {hint}")
        return kinds[attr]

    def _Name(self, node: ast.Name, level: str) -> str:
        if node.id in NAMED_CONSTANTS:
            return NAMED_CONSTANTS[node.id]
        return self.name(node.id, level)

    def _Attribute(self, node: ast.Attribute, level: str) -> str:
        return self.name(dotted(node) or "", level)

    def _Constant(self, node: ast.Constant, level: str) -> str:
        value = node.value
        if isinstance(value, bool):
            return BOOL
        if isinstance(value, int):
            return INT
        if isinstance(value, float):
            return FLOAT
        return STR if isinstance(value, str) else UNKNOWN

    # operators ---------------------------------------------------------
    def _BinOp(self, node: ast.BinOp, level: str) -> str:
        left, right = self.kind(node.left, level), self.kind(node.right, level)
        if isinstance(node.op, ast.Div):
            return FLOAT
        if isinstance(node.op, (ast.BitAnd, ast.BitOr, ast.BitXor)):
            return BOOL
        kind = _combine(left, right)
        return UNKNOWN if kind in (BOOL, STR) else kind

    def _UnaryOp(self, node: ast.UnaryOp, level: str) -> str:
        kind = self.kind(node.operand, level)
        return BOOL if isinstance(node.op, ast.Not) else kind

    def _Compare(self, node: ast.Compare, level: str) -> str:
        operands = (node.left, *node.comparators)
        kinds = [self.kind(child, level) for child in operands]
        for (a, kind_a), (b, kind_b) in zip(zip(operands, kinds), zip(operands[1:], kinds[1:])):
            if {kind_a, kind_b} & {STR} and {kind_a, kind_b} & {INT, FLOAT, BOOL}:
                raise _Problem("compares a string with a number: `sample` is the row's sample name, "
                               "compare it with a name in quotes (sample == 'ttbar')")
            for name, other in ((a, b), (b, a)):
                if (isinstance(name, ast.Name) and name.id == "sample" and isinstance(other, ast.Constant)
                        and isinstance(other.value, str) and self.fields.samples
                        and other.value not in self.fields.samples):
                    raise _Problem(f"{other.value!r} is not a sample{_have(self.fields.samples, other.value)}")
        return BOOL

    def _BoolOp(self, node: ast.BoolOp, level: str) -> str:
        for child in node.values:
            self.kind(child, level)
        return BOOL

    # calls -------------------------------------------------------------
    def _Call(self, node: ast.Call, level: str) -> str:
        func = node.func.id if isinstance(node.func, ast.Name) else ""
        if func in REDUCTIONS:
            return self.reduction(func, node, level)
        kinds = [self.kind(arg, level) for arg in node.args]
        if func in FLOAT_FUNCTIONS:
            return FLOAT
        if func in BOOL_FUNCTIONS:
            return BOOL
        if func == "where" and len(kinds) == 3:
            return _combine(*kinds[1:])
        if func in SAME_KIND_FUNCTIONS and kinds:
            return _combine(*kinds)
        return UNKNOWN

    def reduction(self, func: str, node: ast.Call, level: str) -> str:
        fields = self.fields
        result = INT if func == "count" else FLOAT
        if level == EDGES or not node.args:
            return result
        arg = node.args[0]
        if func == "count":
            coll = arg.id if isinstance(arg, ast.Name) else ""
            if not fields.has_level(coll) or coll == EVENT:
                if fields.open:
                    return result
                raise _Problem(f"count({coll}): {fields.where} has no collection {coll!r}"
                               f"{_have(fields.levels()[1:], coll)}")
            target = coll
        else:
            owners = set()
            for name in _names(arg):
                coll = name.rpartition(".")[0] or EVENT
                if not fields.has_level(coll):
                    if fields.open:
                        return result
                    self.name(name, coll)  # raises: no such collection
                owners.add(coll)
            if not owners:
                raise _Problem(f"{func}() needs a field of a collection to reduce")
            chains = {c: fields.chain(c) for c in owners}
            if any(chain is None for chain in chains.values()):
                return result
            target = max(sorted(owners), key=lambda c: len(chains[c]))
        chain, mine = fields.chain(target), fields.chain(level)
        if chain is None or mine is None:
            return result
        if level not in chain[1:]:
            relation = ("it is that level itself" if target == level else
                        f"it is above {level!r}" if target in mine else
                        f"it hangs off {fields.parents.get(target, EVENT)!r}, beside {level!r}")
            raise _Problem(f"{func}() over {target!r} at the level {level!r}: {target!r} is not below {level!r} "
                           f"({relation}); reductions go from a collection to one of its ancestors")
        if func != "count":
            self.kind(arg, target)
            for extra in node.args[1:]:
                self.kind(extra, level)
        return result


def _names(node: ast.AST) -> Iterable[str]:
    """Field names an expression reads, as the reductions find their level (count() reads none)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "count":
        return
    if isinstance(node, ast.Attribute):
        name = dotted(node)
        if name is not None:
            yield name
            return
    if isinstance(node, ast.Name):
        if node.id not in NAMED_CONSTANTS:
            yield node.id
        return
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Call):
            if isinstance(child.func, ast.Name) and child.func.id == "count":
                continue
            for arg in child.args:
                yield from _names(arg)
        elif isinstance(child, ast.expr):
            yield from _names(child)


def _combine(*kinds: str) -> str:
    if not kinds or UNKNOWN in kinds:
        return UNKNOWN
    if STR in kinds:
        return STR if set(kinds) == {STR} else UNKNOWN
    if FLOAT in kinds:
        return FLOAT
    return INT if INT in kinds else BOOL


def _have(names: Iterable[str], wanted: str) -> str:
    names = sorted(names)
    close = difflib.get_close_matches(wanted, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f" (have: {', '.join(names) or 'none'}){hint}"


def expression_kind(fields: Fields, text: str, level: str, nodes: str | None = None) -> str:
    """The kind of ``text`` evaluated at ``level``; raises ValueError naming what is wrong."""
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"cannot parse {text!r}: {err.msg}") from None
    try:
        return _Walk(fields, nodes).kind(tree.body, level)
    except _Problem as err:
        raise ValueError(str(err)) from None


class KeyedError(ValueError):
    """An expression that cannot run, with the config key that names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _kind_or_fail(fields: Fields, expr: "_Expr") -> str:
    """The kind of ``expr``; raises KeyedError naming its key, the problem and the expression."""
    try:
        return expression_kind(fields, expr.text, expr.level, expr.nodes)
    except ValueError as err:
        text = f" (in {expr.text!r})" if repr(expr.text) not in str(err) else ""
        raise KeyedError(expr.key, f"{expr.what}{err}{text}") from None


# ------------------------------------------------------------------ the checks

@dataclass
class _Expr:
    """One expression of a template: the config key that names it, a prefix naming it within a
    Python template (whose key is the class path's), its text, level and graph nodes."""

    key: str
    what: str
    text: str
    level: str
    nodes: str | None = None
    name: str = ""


def _expressions(key: str, declared: bool, named: Mapping[str, Any], level: str,
                 nodes: str | None = None) -> list[_Expr]:
    """String expressions of ``named``; callables are the template's own business."""
    out = []
    for name, fx in named.items():
        text = getattr(fx, "text", fx)
        if isinstance(text, (str, int, float)) and not callable(text):
            out.append(_Expr(f"{key}.{name}" if declared else key, "" if declared else f"{name}: ", str(text),
                             level, nodes, name))
    return out


def _graph_expressions(graph: Any, declared: bool) -> list[_Expr]:
    from tracerflow.templates.graph import KINDS

    levels = {"node": graph.nodes, "edge": EDGES, "graph": graph.level}
    out = []
    for kind in KINDS:
        level = levels[kind.split("_")[0]]
        out.extend(_expressions(f"graph.template.{kind}", declared, graph.features[kind], level, graph.nodes))
    return out


def _selection_expressions(selection: Any, key: str, declared: bool) -> list[_Expr]:
    cls = type(selection)
    named = {**{f"cuts.{k}": v for k, v in cls.cuts.items()}, **{f"outputs.{k}": v for k, v in cls.outputs.items()}}
    if cls.weight is not None:
        named["weight"] = cls.weight
    return _expressions(key, declared, named, cls.level)


def _sample_block(config: Any, block: str, sample: str) -> dict:
    block_for = getattr(config, "block_for", None)
    if block_for is not None:
        return block_for(block, sample)
    return config[block]


def check_config(config: Any, ctx: Context) -> None:
    """Refuse, naming the key, graph and selection templates the event templates cannot feed, and
    a float-valued label against integer classes (see the module docstring)."""
    from tracerflow.templates.loader import TemplateModules, build_template

    modules = TemplateModules.of(config)
    samples = list(config["samples"])
    event_specs: dict[str, tuple[Any, list[str]]] = {}
    selection_specs: dict[tuple[str, str], tuple[Any, str, list[str]]] = {}
    for sample in samples:
        event_block = _sample_block(config, "event", sample)
        event, selection = event_block["template"], _sample_block(config, "selection", sample)["template"]
        if event is None or selection is None:
            return  # the loader refuses it with its own message
        own = "template" in (config["samples"][sample].get("selection") or {})
        event_id = _identity([event, event_block.get("generator_weight")])
        selection_id = _identity(selection)
        event_specs.setdefault(event_id, (event, []))[1].append(sample)
        selection_key = f"samples.{sample}.selection.template" if own else "selection.template"
        entry = selection_specs.setdefault((event_id, selection_id), (selection, selection_key, []))
        entry[2].append(sample)
    fields: dict[str, Fields] = {}
    for event_id, (spec, users) in event_specs.items():
        own = [s for s in users if "template" in (config["samples"][s].get("event") or {})]
        where = (f"the event template of sample {own[0]!r} (samples.{own[0]}.event.template)" if own
                 else "the event template")
        key = f"samples.{own[0]}.event.template" if own else "event.template"
        try:
            fields[event_id] = event_fields(spec, key, where, modules)
            fields[event_id].samples = tuple(samples)
        except KeyedError as err:
            ctx.fail(err.key, err.message)
        except (ImportError, AttributeError, TypeError):
            return  # the loader refuses it with its own message
        weight = _sample_block(config, "event", users[0]).get("generator_weight")
        if weight is not None:  # BuildEvents stores it as an event field of its own
            own_weight = [s for s in users if "generator_weight" in (config["samples"][s].get("event") or {})]
            weight_key = f"samples.{own_weight[0]}.event.generator_weight" if own_weight else "event.generator_weight"
            _checked_kind(fields[event_id], _Expr(weight_key, "", str(weight), EVENT), ctx)
            fields[event_id].kinds[EVENT][GENERATOR_WEIGHT] = FLOAT

    if config["graph"] is not None:
        graph_spec = config["graph"]["template"]
        try:
            graph = build_template("graph", graph_spec, modules)
        except Exception:
            return
        for made in fields.values():
            _check_graph(graph, isinstance(graph_spec, dict), made, ctx)
            for expr in _graph_expressions(graph, isinstance(graph_spec, dict)):
                _checked_kind(made, expr, ctx)

    output_kinds: dict[str, list[tuple[str, str, list[str]]]] = {}
    for (event_id, _), (spec, key, users) in selection_specs.items():
        try:
            selection = build_template("selection", spec, modules)
        except Exception:
            return
        declared = isinstance(spec, dict)
        level = type(selection).level
        if not fields[event_id].has_level(level) and not fields[event_id].open:
            ctx.fail(f"{key}.level" if declared else key,
                     f"{level!r} is not a collection of {fields[event_id].where}"
                     f"{_have(fields[event_id].levels(), level)}")
        for expr in _selection_expressions(selection, key, declared):
            kind = _checked_kind(fields[event_id], expr, ctx)
            if expr.name.startswith("outputs."):
                output_kinds.setdefault(expr.name[len("outputs."):], []).append((kind, expr.text, users))
    _check_label(config, output_kinds, ctx)


def _checked_kind(fields: Fields, expr: _Expr, ctx: Context) -> str:
    try:
        return _kind_or_fail(fields, expr)
    except KeyedError as err:
        ctx.fail(err.key, err.message)
    return UNKNOWN


def _identity(spec: Any) -> str:
    return json.dumps(spec, sort_keys=True, default=str)


def _check_graph(graph: Any, declared: bool, fields: Fields, ctx: Context) -> None:
    """The graph level is a level of the events and the nodes lie at or below it."""
    key = "graph.template"
    for what, level in (("level", graph.level), ("nodes", graph.nodes)):
        if not fields.has_level(level) and not fields.open:
            ctx.fail(f"{key}.{what}" if declared else key,
                     f"{what} {level!r} is not a collection of {fields.where}{_have(fields.levels(), level)}")
    chain = fields.chain(graph.nodes)
    if chain is not None and fields.has_level(graph.level) and graph.level not in chain:
        ctx.fail(f"{key}.nodes" if declared else key,
                 f"{graph.nodes!r} is not below the graph level {graph.level!r}: its parents are "
                 f"{' -> '.join(chain[1:])}; the nodes of a graph are rows of a collection below its level")
    coordinates = tuple(getattr(graph.topology, "coordinates", ()) or ())
    for name, coordinate in zip(("eta", "phi"), coordinates):
        try:
            _Walk(fields).name(f"{graph.nodes}.{coordinate}", graph.nodes)
        except _Problem as err:
            ctx.fail(f"{key}.topology.{name}" if declared else key, f"node coordinate {err}")


def _check_label(config: Any, output_kinds: dict[str, list[tuple[str, str, list[str]]]], ctx: Context) -> None:
    """A float label cannot name integer classes."""
    resample = config["resample"]
    if resample is None or not resample.get("label"):
        return
    classes = resample.get("classes")
    if not isinstance(classes, dict) or not any(isinstance(v, int) and not isinstance(v, bool)
                                                for v in classes.values()):
        return
    label = resample["label"]
    for kind, text, users in output_kinds.get(label, []):
        if kind == FLOAT:
            whose = f" of sample {', '.join(users)}" if len(users) < len(config["samples"]) else ""
            ctx.fail("resample.label", f"{label!r} is float-valued (selection output {label}: {text!r}{whose}), but "
                     f"resample.classes maps class names to integers ({', '.join(f'{k}: {v}' for k, v in classes.items())}); "
                     f"label a row by an integer-valued output, e.g. a branch or count()")


__all__ = ["BOOL", "FLOAT", "INT", "STR", "UNKNOWN", "Fields", "KeyedError", "check_config", "event_fields",
           "expression_kind"]
