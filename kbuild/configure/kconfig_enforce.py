"""Make requested values hold in the evaluated configuration, or explain why they cannot.

Kconfig semantics the solver follows:

* A symbol with a prompt takes the user's value only while the prompt is visible,
  i.e. while its `depends on` (and any `if` on the prompt) evaluates to y. So to set
  it we first satisfy that expression, term by term.
* A symbol without a prompt (DEBUG_INFO, KEXEC_CORE, CRASH_CORE, VMCORE_INFO) cannot
  be set at all. It is y only when something that `select`s it is y, or when one of
  its `default`s applies. We reach it through those, trying preferred selectors first.
* A choice member (DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT in "Debug information") is set by
  making the choice visible (that choice depends on DEBUG_KERNEL) and selecting it.
* Values that a profile or fragment set, and requirements already met, are locked:
  the solver never flips them. A conflict becomes a Blocker naming the lock.

Every alternative is tried on a journal of user values and rolled back if it fails,
so a failed attempt leaves no trace in the written .config.
"""
from __future__ import annotations

from dataclasses import dataclass

import kconfiglib
from kconfiglib import AND, NOT, OR, EQUAL, UNEQUAL, Choice, Symbol, expr_str, expr_value, split_expr

from kbuild.configure.kconfig_parse import sym_location

TRI = {"n": 0, "m": 1, "y": 2}


@dataclass
class Blocker:
    """Why a value cannot hold: one sentence, and the deeper cause that produced it."""

    text: str
    cause: "Blocker | None" = None

    def __str__(self) -> str:
        return self.text + (f"; {self.cause}" if self.cause else "")


@dataclass(frozen=True)
class Lock:
    value: str
    source: str


def _sc_str(sc) -> str:
    if isinstance(sc, Choice):
        return f"<choice {sc.name or sc.nodes[0].prompt[0]}>"
    if sc.is_constant:
        return kconfiglib.standard_sc_expr_str(sc)
    return f"{sc.name}[={sc.str_value}]"


def expr_with_values(expr) -> str:
    """Render an expression with each term's current value: `A[=y] && B[=n]`."""
    return expr_str(expr, _sc_str)


class Enforcer:
    def __init__(self, kconf: kconfiglib.Kconfig, prefer: dict[str, list[str]] | None = None):
        self.kconf = kconf
        self.locks: dict[str, Lock] = {}
        self.prefer = prefer or {}
        self._journal: list[tuple] = []
        self._visiting: set[str] = set()
        self.changes: list[tuple[str, str]] = []  # (symbol, new value) made by the solver

    # -- journal -----------------------------------------------------------------------
    def _mark(self) -> int:
        return len(self._journal)

    def _rollback(self, mark: int) -> None:
        while len(self._journal) > mark:
            kind, item, old = self._journal.pop()
            if kind == "choice":
                if old is None:
                    item.unset_value()
                else:
                    old.set_value(2)
            elif old is None:
                item.unset_value()
            else:
                item.set_value(old)
        del self.changes[mark:]  # changes and journal entries stay in step (one each)

    def _set(self, sym: Symbol, value: int) -> None:
        if sym.choice is not None:
            self._journal.append(("choice", sym.choice, sym.choice.user_selection))
            self.changes.append((sym.choice.name or "<choice>", sym.name))
        self._journal.append(("sym", sym, sym.user_value))
        self.changes.append((sym.name, "nmy"[value]))
        sym.set_value(value)

    def lock(self, name: str, value: str, source: str) -> None:
        self.locks[name] = Lock(value, source)

    # -- requests ----------------------------------------------------------------------
    def request(self, name: str, value: str) -> Blocker | None:
        """Make symbol `name` evaluate to `value`; on failure roll back and explain."""
        sym = self.kconf.syms[name]
        mark = self._mark()
        if sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
            b = self.make_n(sym) if value == "n" else self.make_on(sym, TRI[value])
        else:
            b = self._make_visible(sym)
            if b is None:
                self._journal.append(("sym", sym, sym.user_value))
                self.changes.append((sym.name, value))
                sym.set_value(value)
                if sym.str_value != value:
                    b = Blocker(f"{sym.name} ({sym_location(sym)}) evaluates to {sym.str_value!r}")
        if b is not None:
            self._rollback(mark)
        return b

    # -- the solver --------------------------------------------------------------------
    def make_on(self, sym: Symbol, want: int = 2) -> Blocker | None:
        if sym.tri_value >= want:
            return None
        if sym.is_constant:
            return Blocker(f"the constant {sym.name} is never y")
        if not sym.nodes:
            return Blocker(f"{sym.name} is not defined in this tree")
        lock = self.locks.get(sym.name)
        if lock and TRI.get(lock.value, 0) < want:
            return Blocker(f"{sym.name} ({sym_location(sym)}) is set to {lock.value} by {lock.source}")
        if sym.name in self._visiting:
            return Blocker(f"{sym.name} depends on itself through the attempted path")
        self._visiting.add(sym.name)
        try:
            return self._make_on(sym, want)
        finally:
            self._visiting.discard(sym.name)

    def _make_on(self, sym: Symbol, want: int) -> Blocker | None:
        loc = sym_location(sym)
        first: Blocker | None = None
        prompts = [n for n in sym.nodes if n.prompt]
        for node in prompts:
            mark = self._mark()
            b = self.satisfy(node.prompt[1], True)
            if b is None and sym.choice is not None:
                b = self._make_visible_choice(sym.choice)
            if b is None:
                self._set(sym, want)
                if sym.tri_value >= want:
                    return None
                b = Blocker(f"set to {'nmy'[want]}, {sym.name} still evaluates to {sym.str_value}")
            self._rollback(mark)
            if first is None:
                first = Blocker(f"{sym.name} ({loc}) depends on {expr_with_values(node.prompt[1])}", b)
        for term in self._ordered(split_expr(sym.rev_dep, OR), sym.name):
            if term is self.kconf.n:
                continue
            mark = self._mark()
            b = self.satisfy(term, True)
            if b is None and sym.tri_value >= want:
                return None
            self._rollback(mark)
            if first is None and b is not None:
                first = Blocker(f"{sym.name} ({loc}) has no prompt; it is selected by "
                                f"{expr_with_values(sym.rev_dep)}", b)
        for default, cond in sym.defaults:
            if default is self.kconf.n:
                continue
            mark = self._mark()
            b = self.satisfy((AND, sym.direct_dep, (AND, default, cond)), True)
            if b is None and sym.tri_value >= want:
                return None
            self._rollback(mark)
            if first is None and b is not None:
                first = Blocker(f"{sym.name} ({loc}) has no prompt; its default "
                                f"{expr_with_values(default)} applies if {expr_with_values(cond)}", b)
        return first or Blocker(f"{sym.name} ({loc}) has no prompt and nothing selects it")

    def _make_visible(self, sym: Symbol) -> Blocker | None:
        for node in sym.nodes:
            if node.prompt and self.satisfy(node.prompt[1], True) is None:
                return None
        node = next((n for n in sym.nodes if n.prompt), None)
        if node is None:
            return Blocker(f"{sym.name} ({sym_location(sym)}) has no prompt and cannot be set")
        return Blocker(f"{sym.name} ({sym_location(sym)}) depends on {expr_with_values(node.prompt[1])}")

    def _make_visible_choice(self, choice: Choice) -> Blocker | None:
        for node in choice.nodes:
            if node.prompt:
                b = self.satisfy(node.prompt[1], True)
                if b is not None:
                    where = f"{node.filename}:{node.linenr}"
                    return Blocker(f"the choice \"{node.prompt[0]}\" ({where}) depends on "
                                   f"{expr_with_values(node.prompt[1])}", b)
        return None

    def make_n(self, sym: Symbol) -> Blocker | None:
        if sym.tri_value == 0:
            return None
        lock = self.locks.get(sym.name)
        if lock and lock.value != "n":
            return Blocker(f"{sym.name} ({sym_location(sym)}) is set to {lock.value} by {lock.source}")
        if sym.choice is not None:
            return Blocker(f"{sym.name} ({sym_location(sym)}) is the selected member of its choice; "
                           "select another member instead")
        if any(n.prompt for n in sym.nodes):
            self._set(sym, 0)
            if sym.tri_value == 0:
                return None
        b = self.satisfy(sym.rev_dep, False)
        if b is None and sym.tri_value == 0:
            return None
        return Blocker(f"{sym.name} ({sym_location(sym)}) is selected by {expr_with_values(sym.rev_dep)}", b)

    def satisfy(self, expr, want: bool) -> Blocker | None:
        """Make `expr` evaluate to y (want=True) or n (want=False)."""
        value = expr_value(expr)
        if (value == 2) if want else (value == 0):
            return None
        if isinstance(expr, Symbol):
            return self.make_on(expr) if want else self.make_n(expr)
        if isinstance(expr, Choice):  # a choice is "y" when it is visible in y mode
            b = self._make_visible_choice(expr) if want else None
            if b is None and expr_value(expr) == (2 if want else 0):
                return None
            return b or Blocker(f"{_sc_str(expr)} cannot be turned {'on' if want else 'off'} directly")
        op = expr[0]
        if op is NOT:
            return self.satisfy(expr[1], not want)
        if (op is AND and want) or (op is OR and not want):
            for operand in (expr[1], expr[2]):
                b = self.satisfy(operand, want)
                if b is not None:
                    return b
            return None
        if op in (AND, OR):  # one operand suffices: try each, keep the first explanation
            first = None
            for operand in (expr[1], expr[2]):
                mark = self._mark()
                b = self.satisfy(operand, want)
                if b is None:
                    return None
                self._rollback(mark)
                first = first or b
            return first
        if op in (EQUAL, UNEQUAL):
            lhs, rhs = expr[1], expr[2]
            if isinstance(lhs, Symbol) and lhs.is_constant and not rhs.is_constant:
                lhs, rhs = rhs, lhs
            if isinstance(lhs, Symbol) and rhs.is_constant and rhs.name in TRI \
                    and lhs.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE):
                equal = (op is EQUAL) == want
                target = TRI[rhs.name]
                if equal:
                    return self.make_n(lhs) if target == 0 else self.make_on(lhs, target)
                if target == 0:
                    return self.make_on(lhs, 2)
                return self.make_n(lhs)
        return Blocker(f"`{expr_with_values(expr)}` is {'nmy'[value]} and cannot be changed by "
                       "setting symbols (it compares toolchain or architecture values)")

    def _ordered(self, terms, name: str):
        pref = self.prefer.get(name, [])

        def rank(term):
            head = split_expr(term, AND)[0]
            hname = getattr(head, "name", None)
            return pref.index(hname) if hname in pref else len(pref)
        return sorted(terms, key=rank)
