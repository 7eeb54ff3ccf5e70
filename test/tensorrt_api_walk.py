"""Which TensorRT names our source uses, derived from the source: an abstract interpretation of the AST,
driven by the real API of one TensorRT release (``tensorrt_bindings.load_api``).

Values are tracked from where the tensorrt module enters (``import tensorrt`` or
``importlib.import_module``) through assignments, tuple unpacking, calls of our own functions and
methods (analysed with the argument values of each call site), attributes of our own objects and the
containers they hold, and the return types that pybind11's signatures give for TensorRT methods and
properties (``builder.create_network()`` is an ``INetworkDefinition`` because 10.x and 11.x say so).
Every attribute read or written on a TensorRT value is a *use*: it must exist in the release, a write
needs a settable property, a call must fit one of the overloads (positional count, keyword names, and
TensorRT-typed arguments of the declared class), and a method of ours that overrides one of a TensorRT
base class must override something that exists.

Version checks are understood: ``hasattr(x, "name")`` and ``getattr(x, "name", default)`` on TensorRT
values are probes (no use), evaluated against the release, and ``if``/``and``/``or``/``not``/``x if c
else y`` prune what that release cannot reach (also through our own predicate functions). A use on a
TensorRT-derived value whose type cannot be determined is reported as unresolved rather than ignored.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------------
# The API of one release
# ---------------------------------------------------------------------------------------------------
_TRT_TYPE = re.compile(r"tensorrt_bindings\.tensorrt\.([A-Za-z_][\w.]*)")
_SIG_LINE = re.compile(r"^(?:\d+\.\s+)?(\w*)\((.*)\)(?:\s*->\s*(.+))?$")


@dataclass(frozen=True)
class Param:
    name: str
    annotation: str
    has_default: bool
    star: str = ""  # "*" or "**"


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]
    returns: str


def _split_top(text: str) -> list[str]:
    parts, depth, cur, quote = [], 0, [], ""
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _parse_params(text: str) -> tuple[Param, ...]:
    out = []
    for p in _split_top(text):
        star = "**" if p.startswith("**") else "*" if p.startswith("*") else ""
        p = p.lstrip("*")
        if p == "" or p == "/":
            continue
        name, _, rest = p.partition(":")
        ann, eq, _default = rest.partition("=")
        if not rest and "=" in name:
            name, eq = name.split("=", 1)[0], "="
        out.append(Param(name.strip(), ann.strip(), bool(eq), star))
    return tuple(out)


def parse_signatures(doc: str) -> list[Signature]:
    """pybind11 signature lines of a docstring (one per overload)."""
    lines = [ln.strip() for ln in doc.splitlines()]
    sigs = []
    for ln in lines:
        m = _SIG_LINE.match(ln)
        if not m or "Overloaded function" in ln:
            continue
        params = _parse_params(m.group(2))
        if any(p.star for p in params) and len(params) == 2 and "Overloaded function." in doc:
            continue  # the "name(*args, **kwargs)" header of an overload set
        sigs.append(Signature(params, (m.group(3) or "").strip()))
    return sigs


def trt_types_in(annotation: str) -> set[str]:
    return set(_TRT_TYPE.findall(annotation))


@dataclass
class Api:
    raw: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.raw["version"])

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def module_member(self, name: str) -> dict[str, Any] | None:
        return self.raw["module"].get(name)  # type: ignore[no-any-return]

    def cls(self, qualname: str) -> dict[str, Any] | None:
        return self.raw["classes"].get(qualname)  # type: ignore[no-any-return]

    def class_member(self, qualname: str, name: str) -> dict[str, Any] | None:
        c = self.cls(qualname)
        return None if c is None else c["members"].get(name)

    def is_subclass(self, qualname: str, base: str) -> bool:
        c = self.cls(qualname)
        return qualname == base or (c is not None and base in c["bases"])


# ---------------------------------------------------------------------------------------------------
# Abstract values
# ---------------------------------------------------------------------------------------------------
class V:
    """Base of abstract values; ``None`` stands for 'nothing known' (not TensorRT)."""


@dataclass(frozen=True)
class Const(V):
    value: Any


@dataclass(frozen=True)
class TrtModule(V):
    pass


@dataclass(frozen=True)
class TrtClass(V):
    qualname: str


@dataclass(frozen=True)
class TrtInstance(V):
    qualname: str


@dataclass(frozen=True)
class TrtCallable(V):
    """A TensorRT method or function, with whether ``self`` is already bound."""

    owner: str  # class qualname, or "" for module functions
    name: str
    bound: bool


@dataclass(frozen=True)
class TrtOpaque(V):
    """Derived from TensorRT, type unknown: any use on it is 'unresolved'."""

    origin: str


@dataclass(frozen=True)
class Tup(V):
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Func(V):
    qualname: str  # module:func or module:Class.method or module:func.<locals>.Class.method


@dataclass(frozen=True)
class LocalClass(V):
    qualname: str


@dataclass(frozen=True)
class LocalInstance(V):
    qualname: str


@dataclass(frozen=True)
class Elements(V):
    """The contents of a container held in attribute ``attr`` of our class ``owner``."""

    owner: str
    attr: str


def join(a: Any, b: Any) -> Any:
    """What a name holds when it may hold ``a`` or ``b``. ``None`` (the constant) has no attributes,
    so a name that is None or a TensorRT object is treated as the object wherever it is used."""
    if a is None or a == Const(None):
        return b
    if b is None or b == Const(None) or a == b:
        return a
    if isinstance(a, Const) and isinstance(b, Const):
        return None
    trt_like = (TrtModule, TrtClass, TrtInstance, TrtCallable, TrtOpaque)
    if isinstance(a, trt_like) or isinstance(b, trt_like):
        return TrtOpaque(f"{a} | {b}")
    return None


def truth(v: Any) -> bool | None:
    return bool(v.value) if isinstance(v, Const) else None


# ---------------------------------------------------------------------------------------------------
# Findings
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Use:
    """One TensorRT name our source needs: ``owner`` is 'tensorrt' or a class qualname."""

    owner: str
    name: str
    kind: str  # read | write | subclass | override
    where: str  # file:line


@dataclass(frozen=True)
class Problem:
    what: str
    where: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Findings:
    uses: set[Use] = field(default_factory=set)
    probes: set[tuple[str, str, bool, str]] = field(default_factory=set)
    problems: set[Problem] = field(default_factory=set)

    def names(self) -> set[str]:
        return {f"{u.owner}.{u.name}" for u in self.uses}


# ---------------------------------------------------------------------------------------------------
# The interpreter
# ---------------------------------------------------------------------------------------------------
@dataclass
class _FuncDef:
    qualname: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    module: str
    cls: str | None  # our class qualname for methods
    closure: dict[str, Any] | None = None


class Walker:
    def __init__(self, api: Api, sources: dict[str, str]) -> None:
        """``sources``: module name -> source text."""
        self.api = api
        self.sources = sources
        self.trees = {m: ast.parse(s) for m, s in sources.items()}
        self.funcs: dict[str, _FuncDef] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.class_module: dict[str, str] = {}
        self.module_env: dict[str, dict[str, Any]] = {}
        self.attrs: dict[str, dict[str, Any]] = {}  # our class -> attr -> value
        self.elems: dict[tuple[str, str], Any] = {}  # (our class, attr) -> element value
        self.local_bases: dict[str, Any] = {}  # our class -> TrtClass base (if any)
        self.findings = Findings()
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._active: set[tuple[Any, ...]] = set()
        for mod, tree in self.trees.items():
            self._collect(mod, tree)

    # -- collection ----------------------------------------------------------------------------------
    def _collect(self, mod: str, tree: ast.Module) -> None:
        env: dict[str, Any] = {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                q = f"{mod}:{node.name}"
                self.funcs[q] = _FuncDef(q, node, mod, None)
                env[node.name] = Func(q)
            elif isinstance(node, ast.ClassDef):
                q = f"{mod}:{node.name}"
                self._collect_class(mod, q, node)
                env[node.name] = LocalClass(q)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant):
                        env[t.id] = Const(node.value.value)
        self.module_env[mod] = env

    def _collect_class(
        self, mod: str, q: str, node: ast.ClassDef, closure: dict[str, Any] | None = None
    ) -> None:
        self.classes[q] = node
        self.class_module[q] = mod
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                mq = f"{q}.{item.name}"
                self.funcs[mq] = _FuncDef(mq, item, mod, q, closure)

    # -- driver --------------------------------------------------------------------------------------
    def run(self) -> Findings:
        """Analyse every function and method as an entry point (arguments unknown) until the facts
        about our objects' attributes stop growing."""
        for _ in range(8):
            before = (
                repr(sorted(map(repr, self.attrs.items()))),
                repr(sorted(map(repr, self.elems.items()))),
            )
            self._memo.clear()
            for q, fd in list(self.funcs.items()):
                if fd.closure is not None:
                    continue  # nested classes' methods are analysed where their class is defined
                self_val = LocalInstance(fd.cls) if fd.cls else None
                self.call_func(q, self_val, [], {}, entry=True)
            after = (repr(sorted(map(repr, self.attrs.items()))), repr(sorted(map(repr, self.elems.items()))))
            if after == before:
                break
        return self.findings

    def where(self, mod: str, node: ast.AST) -> str:
        return f"{mod.rsplit('.', 1)[-1]}.py:{getattr(node, 'lineno', 0)}"

    # -- calls of our own code -------------------------------------------------------------------------
    def call_func(
        self, q: str, self_val: Any, args: list[Any], kwargs: dict[str, Any], entry: bool = False
    ) -> Any:
        fd = self.funcs.get(q)
        if fd is None:
            return None
        closure = tuple(sorted((k, v) for k, v in (fd.closure or {}).items() if v is not None))
        key = (q, self_val, tuple(args), tuple(sorted(kwargs.items())), entry, closure)
        if key in self._memo:
            return self._memo[key]
        if key in self._active:
            return None
        self._active.add(key)
        env: dict[str, Any] = dict(fd.closure or {})
        a = fd.node.args
        params = [p.arg for p in (*a.posonlyargs, *a.args)]
        values = ([self_val] if fd.cls is not None else []) + list(args)
        for name, val in zip(params, values):
            env[name] = val
        for name, val in kwargs.items():
            if name in params or name in [k.arg for k in a.kwonlyargs]:
                env[name] = val
        frame = _Frame(self, fd.module, fd.cls, env)
        frame.block(fd.node.body)
        self._active.discard(key)
        self._memo[key] = frame.returned
        return frame.returned

    def instantiate(self, q: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        node = self.classes[q]
        base = self.local_bases.get(q)
        inst = LocalInstance(q)
        if f"{q}.__init__" in self.funcs:
            self.call_func(f"{q}.__init__", inst, args, kwargs)
        elif _is_dataclass(node):
            fields = [
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            ]
            for name, val in [*zip(fields, args), *kwargs.items()]:
                self.set_attr(q, name, val)
        return TrtInstance(base.qualname) if isinstance(base, TrtClass) else inst

    def set_attr(self, q: str, name: str, val: Any) -> None:
        d = self.attrs.setdefault(q, {})
        d[name] = join(d.get(name), val)

    # -- TensorRT lookups ------------------------------------------------------------------------------
    def trt_attr(self, owner: Any, name: str, where: str, kind: str = "read", probe: bool = False) -> Any:
        api = self.api
        if isinstance(owner, TrtModule):
            entry, oname = api.module_member(name), "tensorrt"
        elif isinstance(owner, (TrtClass, TrtInstance)):
            entry, oname = api.class_member(owner.qualname, name), owner.qualname
        elif isinstance(owner, TrtOpaque):
            if not probe:
                self.findings.problems.add(Problem(f"unresolved: .{name} on {owner.origin}", where))
            return None
        else:
            return None
        if probe:
            self.findings.probes.add((oname, name, entry is not None, where))
            if entry is None:
                return None
        else:
            self.findings.uses.add(Use(oname, name, kind, where))
            if entry is None:
                self.findings.problems.add(
                    Problem(f"tensorrt {api.version}: {oname}.{name} does not exist", where)
                )
                return None
        k = entry["kind"]
        if kind == "write":
            if k != "property" or not entry.get("settable"):
                self.findings.problems.add(
                    Problem(f"tensorrt {api.version}: {oname}.{name} is not a settable property", where)
                )
            return None
        if k == "class":
            return TrtClass(entry["qualname"])
        if k in ("method", "function"):
            bound = isinstance(owner, TrtInstance)
            return TrtCallable("" if isinstance(owner, TrtModule) else owner.qualname, name, bound)
        if k == "property":
            return self.value_of_type(self._returns(entry["doc"]), f"{oname}.{name}")
        if k == "value":
            t = entry.get("type", "")
            if api.cls(t) is not None:
                return TrtInstance(t)
            return None
        return None

    def trt_has(self, owner: Any, name: str) -> bool:
        if isinstance(owner, TrtModule):
            return self.api.module_member(name) is not None
        if isinstance(owner, (TrtClass, TrtInstance)):
            return self.api.class_member(owner.qualname, name) is not None
        return False

    @staticmethod
    def _returns(doc: str) -> str:
        sigs = parse_signatures(doc)
        return sigs[0].returns if sigs else ""

    def value_of_type(self, annotation: str, origin: str) -> Any:
        types = {t for t in trt_types_in(annotation) if self.api.cls(t) is not None}
        if not types:
            return None
        if len(types) == 1 and not re.search(r"\b(list|List|Sequence|tuple|Tuple|dict|Dict)\[", annotation):
            return TrtInstance(types.pop())
        return TrtOpaque(f"{origin} -> {annotation}")

    def signatures_of(self, c: TrtCallable) -> list[Signature]:
        if c.owner:
            entry = self.api.class_member(c.owner, c.name)
        else:
            entry = self.api.module_member(c.name)
        if entry is None:
            return []
        sigs = parse_signatures(entry.get("doc", ""))
        if not sigs and entry.get("signature"):
            sigs = [Signature(_parse_params(entry["signature"].strip()[1:-1]), "")]
        return sigs

    def check_call(
        self,
        sigs: list[Signature],
        bound: bool,
        args: list[Any],
        kwnames: list[str],
        starred: bool,
        what: str,
        where: str,
    ) -> Signature | None:
        """The first overload that accepts the call, else a Problem (None when nothing is known)."""
        if not sigs:
            return None
        reasons = []
        for sig in sigs:
            params = list(sig.params)
            if bound and params and params[0].name in ("self", "arg0") and not params[0].star:
                params = params[1:]
            positional = [p for p in params if not p.star]
            has_var = any(p.star == "*" for p in params)
            has_kw = any(p.star == "**" for p in params)
            if starred:
                return sig
            if len(args) > len(positional) and not has_var:
                reasons.append(f"{len(args)} positional > {len(positional)}")
                continue
            rest = positional[len(args) :]
            unknown_kw = [k for k in kwnames if k not in {p.name for p in rest}]
            if unknown_kw and not has_kw:
                reasons.append(f"no keyword {unknown_kw}")
                continue
            missing = [p.name for p in rest if not p.has_default and p.name not in kwnames]
            if missing:
                reasons.append(f"missing {missing}")
                continue
            bad = []
            for p, a in zip(positional, args):
                want = {t for t in trt_types_in(p.annotation) if self.api.cls(t) is not None}
                if (
                    isinstance(a, TrtInstance)
                    and want
                    and not any(self.api.is_subclass(a.qualname, w) for w in want)
                ):
                    bad.append(f"{p.name}: {a.qualname} is not {sorted(want)}")
            if bad:
                reasons.append("; ".join(bad))
                continue
            return sig
        self.findings.problems.add(
            Problem(
                f"tensorrt {self.api.version}: call {what} fits no signature ({' / '.join(reasons)})", where
            )
        )
        return None


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id == "dataclass")
        or (isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "dataclass")
        for d in node.decorator_list
    )


class _Frame:
    """One function body under analysis (flow-insensitive: a name's value joins all its assignments)."""

    def __init__(self, w: Walker, mod: str, cls: str | None, env: dict[str, Any]) -> None:
        self.w, self.mod, self.cls, self.env = w, mod, cls, env
        self.returned: Any = None
        self._returned_any = False

    def at(self, node: ast.AST) -> str:
        return self.w.where(self.mod, node)

    def lookup(self, name: str) -> Any:
        if name in self.env:
            return self.env[name]
        return self.w.module_env.get(self.mod, {}).get(name)

    def bind(self, target: ast.AST, val: Any) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = join(self.env.get(target.id), val) if target.id in self.env else val
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = val.items if isinstance(val, Tup) and len(val.items) == len(target.elts) else None
            for i, t in enumerate(target.elts):
                self.bind(t, items[i] if items else (TrtOpaque("unpacked") if _is_trt(val) else None))
        elif isinstance(target, ast.Attribute):
            owner = self.expr(target.value)
            if isinstance(owner, LocalInstance):
                self.w.set_attr(owner.qualname, target.attr, val)
            elif _is_trt(owner):
                self.w.trt_attr(owner, target.attr, self.at(target), kind="write")
        elif isinstance(target, ast.Subscript):
            container = self.expr(target.value)
            self.expr(target.slice)
            if isinstance(container, Elements):
                key = (container.owner, container.attr)
                self.w.elems[key] = join(self.w.elems.get(key), val)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, None)

    # -- statements ------------------------------------------------------------------------------------
    def block(self, body: Iterable[ast.stmt]) -> None:
        for s in body:
            self.stmt(s)

    def stmt(self, s: ast.stmt) -> None:
        if isinstance(s, ast.Assign):
            v = self.expr(s.value)
            for t in s.targets:
                self.bind(t, v)
        elif isinstance(s, ast.AnnAssign):
            v = self.expr(s.value) if s.value is not None else None
            if s.value is not None:
                self.bind(s.target, v)
        elif isinstance(s, ast.AugAssign):
            self.expr(s.value)
            self.expr(s.target)
        elif isinstance(s, ast.Expr):
            self.expr(s.value)
        elif isinstance(s, ast.Return):
            v = self.expr(s.value) if s.value is not None else Const(None)
            self.returned = v if not self._returned_any else join(self.returned, v)
            self._returned_any = True
        elif isinstance(s, ast.If):
            cond = truth(self.expr(s.test))
            if cond is not False:
                self.block(s.body)
            if cond is not True:
                self.block(s.orelse)
        elif isinstance(s, (ast.For, ast.AsyncFor)):
            it = self.expr(s.iter)
            self.bind(s.target, TrtOpaque("iterated") if isinstance(it, TrtOpaque) else None)
            self.block(s.body)
            self.block(s.orelse)
        elif isinstance(s, ast.While):
            if truth(self.expr(s.test)) is not False:
                self.block(s.body)
            self.block(s.orelse)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            for item in s.items:
                v = self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.bind(item.optional_vars, v if _is_trt(v) else None)
            self.block(s.body)
        elif isinstance(s, ast.Try) or type(s).__name__ == "TryStar":
            self.block(s.body)  # type: ignore[attr-defined]
            for h in s.handlers:  # type: ignore[attr-defined]
                if h.type is not None:
                    self.expr(h.type)
                if h.name:
                    self.env[h.name] = None
                self.block(h.body)
            self.block(s.orelse)  # type: ignore[attr-defined]
            self.block(s.finalbody)  # type: ignore[attr-defined]
        elif isinstance(s, ast.Raise):
            if s.exc is not None:
                self.expr(s.exc)
        elif isinstance(s, ast.Assert):
            self.expr(s.test)
        elif isinstance(s, (ast.Import, ast.ImportFrom)):
            self.import_(s)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            q = f"{self.mod}:<local>.{s.name}.{s.lineno}"
            self.w.funcs[q] = _FuncDef(q, s, self.mod, None, dict(self.env))
            self.env[s.name] = Func(q)
        elif isinstance(s, ast.ClassDef):
            self.local_class(s)
        elif isinstance(s, ast.Delete):
            for t in s.targets:
                self.expr(t)

    def import_(self, s: ast.Import | ast.ImportFrom) -> None:
        if isinstance(s, ast.Import):
            for alias in s.names:
                if alias.name.split(".")[0] in ("tensorrt", "tensorrt_rtx"):
                    self.env[alias.asname or alias.name.split(".")[0]] = TrtModule()
            return
        mod = s.module or ""
        for alias in s.names:
            name = alias.asname or alias.name
            if mod.split(".")[0] in ("tensorrt", "tensorrt_rtx"):
                self.env[name] = self.w.trt_attr(TrtModule(), alias.name, self.at(s))
            elif mod in self.w.trees:
                self.env[name] = self.w.module_env[mod].get(alias.name)
            else:
                self.env[name] = None

    def local_class(self, s: ast.ClassDef) -> None:
        q = f"{self.mod}:<local>.{s.name}.{s.lineno}"
        self.w._collect_class(self.mod, q, s, dict(self.env))
        self.env[s.name] = LocalClass(q)
        for b in s.bases:
            base = self.expr(b)
            if isinstance(base, TrtClass):
                self.w.local_bases[q] = base
                self.w.findings.uses.add(Use(base.qualname, "(subclassed)", "subclass", self.at(b)))
                self.overrides(s, base)
        for item in s.body:  # bodies of a nested class's methods: closure env, self unknown
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.w.call_func(f"{q}.{item.name}", None, [], {}, entry=True)

    def overrides(self, s: ast.ClassDef, base: TrtClass) -> None:
        """Methods we define on a TensorRT subclass are called by TensorRT: they must override a
        method the base has, with a compatible parameter count."""
        for item in s.body:
            if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) or item.name.startswith("__"):
                continue
            where = self.at(item)
            self.w.findings.uses.add(Use(base.qualname, item.name, "override", where))
            entry = self.w.api.class_member(base.qualname, item.name)
            if entry is None or entry["kind"] != "method":
                self.w.findings.problems.add(
                    Problem(
                        f"tensorrt {self.w.api.version}: {base.qualname}.{item.name} "
                        "does not exist to override",
                        where,
                    )
                )
                continue
            ours = item.args
            n_ours = len(ours.args) - 1
            n_required = n_ours - len(ours.defaults)
            sigs = parse_signatures(entry.get("doc", ""))
            counts = [len([p for p in sig.params if not p.star]) - 1 for sig in sigs]
            if counts and not any(n_required <= c <= n_ours or ours.vararg for c in counts):
                self.w.findings.problems.add(
                    Problem(
                        f"tensorrt {self.w.api.version}: {base.qualname}.{item.name} passes {counts} "
                        f"arguments, our override takes {n_required}..{n_ours}",
                        where,
                    )
                )

    # -- expressions -----------------------------------------------------------------------------------
    def expr(self, e: ast.expr | None) -> Any:
        if e is None:
            return None
        if isinstance(e, ast.Constant):
            return Const(e.value)
        if isinstance(e, ast.Name):
            return self.lookup(e.id)
        if isinstance(e, ast.Attribute):
            owner = self.expr(e.value)
            return self.attribute(owner, e.attr, e)
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.Tuple):
            return Tup(tuple(self.expr(x) for x in e.elts))
        if isinstance(e, ast.BoolOp):
            return self.boolop(e)
        if isinstance(e, ast.UnaryOp):
            v = self.expr(e.operand)
            if isinstance(e.op, ast.Not):
                t = truth(v)
                return None if t is None else Const(not t)
            return None
        if isinstance(e, ast.IfExp):
            t = truth(self.expr(e.test))
            a = self.expr(e.body) if t is not False else None
            b = self.expr(e.orelse) if t is not True else None
            return a if t is True else b if t is False else join(a, b)
        if isinstance(e, ast.Subscript):
            v = self.expr(e.value)
            self.expr(e.slice)
            if isinstance(v, Elements):
                return self.w.elems.get((v.owner, v.attr))
            if isinstance(v, Tup) and isinstance(e.slice, ast.Constant) and isinstance(e.slice.value, int):
                try:
                    return v.items[e.slice.value]
                except IndexError:
                    return None
            return TrtOpaque("subscript") if _is_trt(v) else None
        if isinstance(e, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for gen in e.generators:
                it = self.expr(gen.iter)
                self.bind(gen.target, TrtOpaque("iterated") if isinstance(it, TrtOpaque) else None)
                for cond in gen.ifs:
                    self.expr(cond)
            if isinstance(e, ast.DictComp):
                self.expr(e.key)
                self.expr(e.value)
            else:
                self.expr(e.elt)
            return None
        if isinstance(e, ast.Lambda):
            self.expr(e.body)
            return None
        if isinstance(e, ast.Starred):
            self.expr(e.value)
            return None
        if isinstance(e, ast.NamedExpr):
            v = self.expr(e.value)
            self.bind(e.target, v)
            return v
        for child in ast.iter_child_nodes(e):  # BinOp, Compare, List, Dict, Set, JoinedStr, Slice ...
            if isinstance(child, ast.expr):
                self.expr(child)
        return None

    def boolop(self, e: ast.BoolOp) -> Any:
        is_and = isinstance(e.op, ast.And)
        unknown = False
        last: Any = None
        for operand in e.values:
            last = self.expr(operand)
            t = truth(last)
            if t is None:
                unknown = True
            elif t is not is_and:  # False in an `and`, True in an `or`: decided
                return Const(t)
        return None if unknown else last

    def attribute(self, owner: Any, name: str, node: ast.AST) -> Any:
        if isinstance(owner, LocalInstance):
            v = self.w.attrs.get(owner.qualname, {}).get(name)
            if v is not None:
                return v
            if f"{owner.qualname}.{name}" in self.w.funcs:
                return _Method(owner, f"{owner.qualname}.{name}")
            return Elements(owner.qualname, name)
        if isinstance(owner, LocalClass):
            if f"{owner.qualname}.{name}" in self.w.funcs:
                return Func(f"{owner.qualname}.{name}")
            return None
        if _is_trt(owner):
            return self.w.trt_attr(owner, name, self.at(node))
        return None

    def call(self, e: ast.Call) -> Any:
        f = e.func
        # Probes: hasattr(x, "n") / getattr(x, "n"[, default]) with a constant name.
        if isinstance(f, ast.Name) and f.id in ("hasattr", "getattr") and len(e.args) >= 2:
            owner = self.expr(e.args[0])
            name = e.args[1].value if isinstance(e.args[1], ast.Constant) else None
            for extra in e.args[2:]:
                self.expr(extra)
            if isinstance(name, str) and _is_trt(owner):
                if f.id == "getattr" and len(e.args) == 2:
                    return self.w.trt_attr(owner, name, self.at(e))
                v = self.w.trt_attr(owner, name, self.at(e), probe=True)
                if f.id == "hasattr":
                    return Const(self.w.trt_has(owner, name))
                return v
            if isinstance(name, str) and isinstance(owner, LocalInstance) and f.id == "getattr":
                return self.attribute(owner, name, e)
            return None
        # importlib.import_module(...) brings the tensorrt module in.
        if isinstance(f, ast.Attribute) and f.attr == "import_module" and isinstance(f.value, ast.Name):
            for a in e.args:
                self.expr(a)
            if f.value.id == "importlib":
                arg = self.expr(e.args[0]) if e.args else None
                if not isinstance(arg, Const) or str(arg.value).startswith("tensorrt"):
                    return TrtModule()
            return None
        callee = self.expr(f)
        args = []
        starred = False
        for a in e.args:
            if isinstance(a, ast.Starred):
                starred = True
                self.expr(a.value)
            else:
                args.append(self.expr(a))
        kwargs: dict[str, Any] = {}
        for kw in e.keywords:
            v = self.expr(kw.value)
            if kw.arg is None:
                starred = True
            else:
                kwargs[kw.arg] = v
        where = self.at(e)
        if isinstance(callee, Func):
            fd = self.w.funcs.get(callee.qualname)
            if fd is not None and fd.cls is not None:  # Class.method(self, ...) called through the class
                return self.w.call_func(callee.qualname, args[0] if args else None, args[1:], kwargs)
            return self.w.call_func(callee.qualname, None, args, kwargs)
        if isinstance(callee, _Method):
            return self.w.call_func(callee.qualname, callee.self_val, args, kwargs)
        if isinstance(callee, LocalClass):
            return self.w.instantiate(callee.qualname, args, kwargs)
        if isinstance(callee, TrtClass):
            init = TrtCallable(callee.qualname, "__init__", True)
            self.w.check_call(
                self.w.signatures_of(init),
                True,
                args,
                list(kwargs),
                starred,
                f"{callee.qualname}(...)",
                where,
            )
            return TrtInstance(callee.qualname)
        if isinstance(callee, TrtCallable):
            what = f"{callee.owner or 'tensorrt'}.{callee.name}(...)"
            sig = self.w.check_call(
                self.w.signatures_of(callee), callee.bound, args, list(kwargs), starred, what, where
            )
            if sig is not None:
                return self.w.value_of_type(sig.returns, what)
            sigs = self.w.signatures_of(callee)
            return self.w.value_of_type(sigs[0].returns, what) if sigs else None
        if isinstance(callee, TrtOpaque):
            self.w.findings.problems.add(Problem(f"unresolved: call of {callee.origin}", where))
        return None


@dataclass(frozen=True)
class _Method(V):
    self_val: Any
    qualname: str


def _is_trt(v: Any) -> bool:
    return isinstance(v, (TrtModule, TrtClass, TrtInstance, TrtCallable, TrtOpaque))


# ---------------------------------------------------------------------------------------------------
def package_sources(src_root: Path, modules: Iterable[str]) -> dict[str, str]:
    return {m: (src_root / (m.replace(".", "/") + ".py")).read_text() for m in modules}


def modules_using(src_root: Path, target: str) -> Iterator[str]:
    """Every module of the package that imports ``target`` (dotted), for the walk's scope."""
    for path in sorted(src_root.rglob("*.py")):
        mod = ".".join(path.relative_to(src_root).with_suffix("").parts)
        if mod == target or target in path.read_text():
            yield mod


def walk(api: Api, sources: dict[str, str]) -> Findings:
    return Walker(api, sources).run()
