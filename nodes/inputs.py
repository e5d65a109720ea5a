"""Widget inputs declared once: each node's V3 schema inputs and every check of their values come from one
declaration (name, type, default, range or options, tooltip).

Where each check runs, and why (ComfyUI's execution.py ``validate_inputs``, 0.3.75 to 0.38):
- ComfyUI range-checks INT/FLOAT widgets itself (``min``/``max``) and, from 0.3.76-ish on, V3 combo options: one
  error per bad input, tagged with that input. It does this only for inputs the node's ``validate_inputs`` does
  NOT name.
- A string returned by ``validate_inputs`` is reported once for EVERY input it names (the loop is ``for x in
  input_filtered``): naming ten inputs turned one bad ``length`` into ten copies, each tagged with another input.
  Nothing lets the node point the message at one of them.
So the ranges stay with ComfyUI (with NaN-refusing limits, :class:`Limit`); ``validate_inputs`` names only combos,
and only on versions that do not check V3 combo options themselves; the rules ComfyUI has no per-input hook for
(multiples of 8, a keyframe inside the clip) and every value that arrives through a link (``validate_inputs``
sees those as None) are checked in ``execute``: one execution error that lists each bad input once, naming the
node and the input. Widget values that ComfyUI already accepted pass those checks again unchanged.
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from comfy_api.latest import io

log = logging.getLogger("microcinema.nodes")

# A rule across inputs: values -> a message naming the node and its input, or None. Runs in execute only.
Rule = Callable[[dict[str, Any]], "str | None"]


class Limit(float):
    """The min or max of a FLOAT input, outside of which NaN lies.

    ComfyUI checks a widget value with ``value < min`` and ``value > max``; both are False for NaN, so NaN would
    pass. Python asks the right-hand operand first when its type is a subclass of the left one's (the reflected
    comparison), so these limits answer "out of range" for NaN and ComfyUI reports it like any range error: once,
    on that input. Every other comparison, and the JSON the front end gets, is the plain number's."""

    def __gt__(self, other: object) -> bool:  # min > value, asked for ``value < min``
        if isinstance(other, float) and math.isnan(other):
            return True
        return float.__gt__(self, other)

    def __lt__(self, other: object) -> bool:  # max < value, asked for ``value > max``
        if isinstance(other, float) and math.isnan(other):
            return True
        return float.__lt__(self, other)


@dataclass(frozen=True)
class Widget:
    """One widget input. ``options`` may be a callable (file lists, read when the schema is built)."""
    name: str
    kind: str  # "INT" | "FLOAT" | "COMBO"
    default: Any
    tooltip: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    multiple_of: int | None = None  # INT: also refused unless a multiple of this (checked in execute)
    why: str = ""  # appended to the multiple_of message
    options: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    options_text: str | None = None  # how a refusal describes the options, e.g. "a file in models/microcinema"
    control_after_generate: bool = False

    def listed(self) -> list:
        return list(self.options() if callable(self.options) else self.options or [])

    def schema_input(self) -> io.Input:
        if self.kind == "INT":
            return io.Int.Input(self.name, default=self.default, min=self.min, max=self.max, step=self.step,
                                control_after_generate=self.control_after_generate or None, tooltip=self.tooltip)
        if self.kind == "FLOAT":
            return io.Float.Input(self.name, default=self.default, min=Limit(self.min), max=Limit(self.max),
                                  step=self.step, tooltip=self.tooltip)
        return io.Combo.Input(self.name, options=self.listed(), default=self.default, tooltip=self.tooltip)

    def problem(self, node: str, value: Any) -> str | None:
        """What is wrong with ``value`` for this input, as a message naming ``node`` and the input, or None."""
        where = f"{node}: input '{self.name}'"
        if self.kind == "COMBO":
            options = self.listed()
            if value in options:
                return None
            text = self.options_text or "one of " + ", ".join(str(o) for o in options)
            return f"{where}: {value!r} is not {text}"
        if self.kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{where} must be a whole number, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{where} must be a number, got {value!r}"
        if not math.isfinite(value) or not self.min <= value <= self.max:
            kind = "a number " if self.kind == "FLOAT" else ""
            return f"{where} must be {kind}between {self.min} and {self.max}, got {value}"
        if self.multiple_of and value % self.multiple_of:
            return (f"{where} must be a multiple of {self.multiple_of} between {self.min} and {self.max}"
                    f"{' ' + self.why if self.why else ''}, got {value}")
        return None


def Int(name: str, default: int, low: int, high: int, tooltip: str, *, step: int | None = None,
        multiple_of: int | None = None, why: str = "", seed: bool = False) -> Widget:
    return Widget(name, "INT", default, tooltip, min=low, max=high, step=step, multiple_of=multiple_of, why=why,
                  control_after_generate=seed)


def Float(name: str, default: float, low: float, high: float, step: float, tooltip: str) -> Widget:
    return Widget(name, "FLOAT", default, tooltip, min=low, max=high, step=step)


def Combo(name: str, options: Sequence[Any] | Callable[[], Sequence[Any]], default: Any, tooltip: str, *,
          options_text: str | None = None) -> Widget:
    return Widget(name, "COMBO", default, tooltip, options=options, options_text=options_text)


@functools.cache
def comfy_checks_combo_options() -> bool:
    """Whether the running ComfyUI refuses V3 combo values that are not among the options (0.33 does, 0.3.75
    does not). Read from its validate_inputs source; when that cannot be read we check them ourselves."""
    try:
        import execution  # ComfyUI's execution.py

        return "Combo.io_type" in inspect.getsource(execution.validate_inputs)
    except (ImportError, OSError, TypeError):
        return False


class Widgets:
    """The widget inputs of one node, in schema order, and its cross-input rules."""

    def __init__(self, node: str, *widgets: Widget, rules: Sequence[Rule] = ()):
        self.node = node
        self.widgets = {w.name: w for w in widgets}
        self.rules = tuple(rules)

    def __getitem__(self, name: str) -> Widget:
        return self.widgets[name]

    def input(self, name: str) -> io.Input:
        return self.widgets[name].schema_input()

    def inputs(self) -> list[io.Input]:
        return [w.schema_input() for w in self.widgets.values()]

    def problems(self, values: dict[str, Any], *, rules: bool = True) -> list[str]:
        """One message per bad input among ``values`` (inputs not given are skipped); the rules run only when
        every input has a valid value of its own."""
        found = [p for name, value in values.items() if name in self.widgets
                 for p in [self.widgets[name].problem(self.node, value)] if p]
        if rules and not found:
            found = [p for rule in self.rules for p in [rule(values)] if p]
        return found

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` when every widget value is good, else a ValueError listing each bad input once. For
        execute, where values fed by links arrive unchecked."""
        found = self.problems(values)
        if found:
            raise ValueError("\n".join(found))
        return values

    def validator(self) -> classmethod:
        """The node's ``validate_inputs``: it names (so takes over from ComfyUI) only the combos, and only where
        ComfyUI does not check their options itself; see the module docstring for why nothing else."""
        names = [] if comfy_checks_combo_options() else [w.name for w in self.widgets.values() if w.kind == "COMBO"]
        widgets = self

        def validate_inputs(cls, **values):
            # None: fed by a link, unknown before the run (checked in execute)
            problems = widgets.problems({k: v for k, v in values.items() if v is not None}, rules=False)
            return "; ".join(problems) or True

        # ComfyUI reads the inputs to pass (and to stop range-checking itself) from the argument names.
        positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
        validate_inputs.__signature__ = inspect.Signature(
            [inspect.Parameter("cls", positional)] + [inspect.Parameter(n, positional, default=None) for n in names])
        return classmethod(validate_inputs)
