"""Vectorised expressions written in configs: ``abs(jets.eta) < 2.5``, ``sum(jets.pt)``.

A small, safe subset of Python syntax (arithmetic, comparisons, ``and``/``or``/``not``,
whitelisted numpy functions and reductions over collections) compiled once and evaluated on
whole arrays of a :class:`~tracerflow.columns_scope.Scope`. Nothing else can be called.
"""
from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tracerflow.columns_scope import Scope, ScopeError
from tracerflow.templates.fourvector import wrap_phi


def _delta_phi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return wrap_phi(np.asarray(a) - np.asarray(b))


def _delta_r(eta1, phi1, eta2, phi2) -> np.ndarray:
    return np.hypot(np.asarray(eta1) - np.asarray(eta2), _delta_phi(phi1, phi2))


FUNCTIONS: dict[str, Callable] = {
    "abs": np.abs, "sqrt": np.sqrt, "log": np.log, "log10": np.log10, "log1p": np.log1p,
    "exp": np.exp, "sin": np.sin, "cos": np.cos, "tan": np.tan, "arctan2": np.arctan2,
    "arcsinh": np.arcsinh, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "hypot": np.hypot,
    "minimum": np.minimum, "maximum": np.maximum, "where": np.where, "clip": np.clip,
    "isnan": np.isnan, "isfinite": np.isfinite, "sign": np.sign,
    "delta_phi": _delta_phi, "delta_r": _delta_r,
}
REDUCTIONS = ("count", "sum", "max", "min", "at")
CONSTANTS = {"pi": np.pi, "inf": np.inf, "nan": np.nan, "true": True, "false": False}

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
    ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or, ast.BitXor: np.logical_xor,
}
_COMPARE = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


class ExpressionError(ValueError):
    """An expression that does not parse, uses a forbidden construct or an unknown name."""


@dataclass(frozen=True)
class Expression:
    """A compiled expression; ``names`` are the dotted column names it reads."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def __call__(self, scope: Scope) -> np.ndarray:
        try:
            value = _Evaluator(scope).visit(self.tree.body)
        except ScopeError as err:
            raise ExpressionError(f"in {self.text!r}: {err}") from None
        return np.broadcast_to(np.asarray(value), (len(scope),)).copy() if np.ndim(value) == 0 else value


def compile_expression(text: str) -> Expression:
    """Parse and check ``text``; raise :class:`ExpressionError` naming what is not allowed."""
    if not isinstance(text, str):
        text = str(text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"cannot parse {text!r}: {err.msg}") from None
    names: set[str] = set()
    _Checker(text, names).visit(tree.body)
    return Expression(text=text, tree=tree, names=frozenset(names))


def dotted(node: ast.AST) -> str | None:
    """``jets.pt`` for an Attribute chain over a Name, ``x`` for a Name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self, text: str, names: set[str]) -> None:
        self.text = text
        self.names = names

    def fail(self, what: str) -> None:
        raise ExpressionError(f"{what} is not allowed in expression {self.text!r}")

    def generic_visit(self, node: ast.AST) -> None:
        allowed = (ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Constant, ast.operator,
                   ast.unaryop, ast.cmpop, ast.boolop)
        if not isinstance(node, allowed):
            self.fail(type(node).__name__)
        super().generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, (int, float, bool, str)):
            self.fail(f"constant {node.value!r}")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) not in _BINARY:
            self.fail(type(node.op).__name__)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for op in node.ops:
            if type(op) not in _COMPARE:
                self.fail(type(op).__name__)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id not in CONSTANTS:
            self.names.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = dotted(node)
        if name is None:
            self.fail("attribute access on an expression")
        self.names.add(name)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func not in FUNCTIONS and func not in REDUCTIONS:
            self.fail(f"calling {ast.unparse(node.func)!r} (allowed: {sorted(FUNCTIONS) + list(REDUCTIONS)})")
        if node.keywords:
            self.fail("keyword arguments")
        if func == "count":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
                self.fail("count() other than count(<collection>)")
            return
        if func == "at" and (len(node.args) != 2 or not isinstance(node.args[1], ast.Constant)):
            self.fail("at() other than at(<field>, <integer>)")
        for arg in node.args:
            self.visit(arg)


class _Evaluator(ast.NodeVisitor):
    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def visit_Constant(self, node: ast.Constant):
        return node.value

    def visit_Name(self, node: ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        return self.scope[node.id]

    def visit_Attribute(self, node: ast.Attribute):
        return self.scope[dotted(node)]

    def visit_UnaryOp(self, node: ast.UnaryOp):
        value = self.visit(node.operand)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return value
        return np.logical_not(value)

    def visit_BinOp(self, node: ast.BinOp):
        return _BINARY[type(node.op)](self.visit(node.left), self.visit(node.right))

    def visit_BoolOp(self, node: ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        values = [self.visit(v) for v in node.values]
        out = values[0]
        for value in values[1:]:
            out = combine(out, value)
        return out

    def visit_Compare(self, node: ast.Compare):
        left = self.visit(node.left)
        out = None
        for op, right_node in zip(node.ops, node.comparators):
            right = self.visit(right_node)
            part = _COMPARE[type(op)](left, right)
            out = part if out is None else np.logical_and(out, part)
            left = right
        return out

    def visit_Call(self, node: ast.Call):
        func = node.func.id
        if func in FUNCTIONS:
            return FUNCTIONS[func](*[self.visit(a) for a in node.args])
        if func == "count":
            level = node.args[0].id
            return self.scope.reduce("count", np.zeros(0), level)
        level = self._level_of(node.args[0])
        inner = Scope(self.scope.batch, level)
        values = np.asarray(_Evaluator(inner).visit(node.args[0]), dtype=np.float64)
        position = int(node.args[1].value) if func == "at" else 0
        return self.scope.reduce(func, values, level, position)

    def _level_of(self, node: ast.AST) -> str:
        """The deepest level among the names read by a reduction's argument."""
        names: set[str] = set()
        _Checker("", names).visit(node)
        levels = {self.scope.level_of(n) for n in names}
        if not levels:
            raise ScopeError("a reduction needs at least one collection field")
        return max(levels, key=lambda lv: len(self.scope.chain(lv)))
