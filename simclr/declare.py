"""How a config key is declared (simclr/config.py declares them): `key()` makes a dataclass field carrying the key's
one-line help, its valid `Range` and its default `Search` range; `redeclare` gives the keys a section inherits
from a shared base other defaults (and, where it says so, other help or search ranges) without declaring them
again. No torch and no Optuna here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields


@dataclass(frozen=True)
class Range:
    """The values a key accepts: bounds (open `gt`/`lt`, closed `ge`/`le`), a choice list, or a check function."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple = ()
    check: Callable[[object], str | None] | None = None  # returns why a value is bad, else None
    why: str = ""  # appended to a bound's error message

    def error(self, value: object) -> str | None:
        """Why `value` is out of range, else None."""
        if self.choices and value not in self.choices:
            return f"choose from {', '.join(map(str, self.choices))}"
        if self.check is not None:
            return self.check(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        bad = (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        )
        if not bad:
            return None
        text = self.text()
        return f"must be {'' if text[0] in '<>' else 'in '}{text}{f' ({self.why})' if self.why else ''}"

    def text(self) -> str:
        """The range as a reader writes it: `> 0`, `[0, 1)`, `sgd|lars|adamw`."""
        if self.choices:
            return "|".join(map(str, self.choices))
        if self.check is not None:
            return self.check.__doc__ or ""
        low, high = self.gt if self.gt is not None else self.ge, self.lt if self.lt is not None else self.le
        if low is None and high is None:
            return ""
        if high is None:
            return f"{'>' if self.gt is not None else '>='} {_num(low)}"
        if low is None:
            return f"{'<' if self.lt is not None else '<='} {_num(high)}"
        return f"{'(' if self.gt is not None else '['}{_num(low)}, {_num(high)}{')' if self.lt is not None else ']'}"


@dataclass(frozen=True)
class Search:
    """A key's default search range (plain data: objectives/space.py turns it into an Optuna distribution).

    kind "float" or "int": [low, high], log-uniform when `log`; kind "choice": `choices`. With `relative`, low,
    high and choices multiply the key's configured value, so a preset (smoke's small batch, paper's LARS
    learning rate) moves the space with it.
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()
    relative: bool = False
    only: tuple[str, ...] = ()  # the objectives that search it by default (empty: every objective with the key)

    def resolve(self, value: object) -> tuple:
        """("float"|"int", low, high, log) or ("choice", values) for a configured `value`."""
        if self.kind == "choice":
            if not self.relative:
                return ("choice", tuple(self.choices))
            scaled = sorted(
                {max(2, int(value * c)) if isinstance(value, int) else _sig(value * c) for c in self.choices}
            )
            return ("choice", tuple(scaled))
        low, high = (_sig(value * self.low), _sig(value * self.high)) if self.relative else (self.low, self.high)
        return (self.kind, low, high, self.log)

    def text(self) -> str:
        if self.kind == "choice":
            return ("x" if self.relative else "") + "{" + ", ".join(f"{c:g}" for c in self.choices) + "}"
        scale = "x" if self.relative else ""
        return f"{scale}[{self.low:g}, {self.high:g}]{' log' if self.log else ''}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def _field(default: object, help: str, range_: Range, search: Search | None):
    return field(default=default, metadata={"help": help, "range": range_, "search": search})


def key(default: object, help: str, *, search: Search | None = None, **range_: object):
    """A config key: its default, one-line help, range (Range's keywords) and default search range."""
    return _field(default, help, Range(**range_), search)


def shared_key(section: type, name: str):
    """Key `name` declared exactly as `section` declares it (default, help, range, search range): for a section
    that shares a key with another it does not extend, so that the two never drift apart."""
    declared = section.__dataclass_fields__[name]  # KeyError: not a key of that section
    meta = declared.metadata
    return _field(declared.default, meta["help"], meta["range"], meta["search"])


POSITIVE = {"gt": 0}
NON_NEGATIVE = {"ge": 0}
FRACTION = {"gt": 0, "le": 1}
PROBABILITY = {"ge": 0, "le": 1}
PER_SECTION = MISSING  # the default of a shared key that each section states (`redeclare`): none of its own


@dataclass(frozen=True)
class As:
    """An inherited key as `redeclare` gives it to a section: its default, help and search range there (where
    left out: the base's)."""

    default: object = None  # None: the base's (no key has None for a default)
    help: str | None = None
    search: Search | None = None


def redeclare(**keys: object) -> Callable[[type], type]:
    """A class decorator, placed under @dataclass, for a section that subclasses a key-declaring dataclass: each
    inherited key named here gets the default given (a value, or `As(default, help=..., search=...)`), keeping
    the base's type, range, and (unless `As` says otherwise) help and search range. The key keeps its place."""

    def apply(cls: type) -> type:
        inherited = {f.name: f for f in fields(cls)}
        annotations = cls.__dict__.get("__annotations__", {})
        for name, given in keys.items():
            base = inherited[name]  # KeyError: not a key of the base
            given = given if isinstance(given, As) else As(given)
            meta = base.metadata
            help, search = given.help or meta["help"], given.search or meta["search"]
            default = base.default if given.default is None else given.default
            setattr(cls, name, _field(default, help, meta["range"], search))
            annotations[name] = base.type
        cls.__annotations__ = annotations
        return cls

    return apply


def dataset_check(value: object) -> str | None:
    """cifar10|cifar100|folder:PATH"""
    text = str(value)
    if text in ("cifar10", "cifar100") or (text.startswith("folder:") and len(text) > len("folder:")):
        return None
    return "use cifar10, cifar100 or folder:PATH (PATH holding train/<class>/* and test/<class>/*)"


def not_empty_check(value: object) -> str | None:
    """random|imagenet|best:STUDY|trial:STUDY:N|PATH"""
    return None if str(value).strip() else "must not be empty"


# Upper bounds: far beyond any published recipe, so that a typo (epochs=10000000) is refused at `create` rather
# than run with an ETA of years.
EPOCHS_CAP = {"le": 10_000, "why": "SimCLR's longest schedule is 3200 epochs: more is a typo"}
IMAGES_CAP = {"le": 10_000_000, "why": "more images than any dataset here"}
WIDTH_CAP = {"le": 65_536, "why": "SimCLR's widest head is 8192"}
