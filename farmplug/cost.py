"""Money: what a set of tasks cost at a farm's prices.

Prices live in a YAML file (``examples/prices.yaml``) read into :class:`Prices`; without one,
reports use :func:`default_prices` (the package's copy of ``examples/prices.yaml``, named as
such on every page that uses it). The cost of a
set of timing records is a :class:`CostBreakdown`: per (stage, role), the hours of each billed
resource and the money each costs, overheads (process start, scene and model load) included.

What is billed, and how it is measured:

* **CPU**: measured CPU core-seconds (``TimingRecord.cpu_s``: user+system, all threads,
  overhead included), the same measure the savings report uses. Billed per core-hour
  (``cpu_core_hour``), or per GHz-hour as cloud render farms do (``ghz_hour``: core-hours x the
  billed clock ``cpu_ghz`` x price). A farm bills CPU one way: exactly one of the two is given.
* **GPU**: a task that used the GPU (any frame with ``gpu_s > 0``) holds it for its whole wall
  time, model load included, so it is billed GPU wall-hours (``gpu_hour``), not just the
  kernel seconds it measured.
* **Render licence** (optional ``licence_node_hour``): per node-hour of render tasks (stages in
  :data:`RENDER_STAGES`); a render task occupies one node, so node-hours = its wall hours.
  Absent means the renderer is free (Blender), not an error.

Money is :class:`~decimal.Decimal`, computed exactly from the prices and never rounded in the
sums: rounding to cents happens only at display (:func:`format_money`), so a thousand tasks of a
fraction of a cent each still add up to the right total.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr

from farmplug.errors import ConfigError
from farmplug.schema import StrictModel, load_model
from farmplug.timing import TimingRecord

#: Stages whose tasks run the renderer (and so need a render licence per node): every render
#: task's record says ``render`` (aux renders included), fallback tasks say ``fallback``.
RENDER_STAGES = frozenset({"render", "fallback"})

#: The package's copy of ``examples/prices.yaml`` (package data; a test keeps the two equal).
DEFAULT_PRICES_FILE = Path(__file__).resolve().parent / "templates" / "default-prices.yaml"
#: How pages and ``report.json`` name the default prices' source.
DEFAULT_PRICES_SOURCE = "farmplug/templates/default-prices.yaml"

_SECONDS_PER_HOUR = Decimal(3600)
_CENT = Decimal("0.01")


class Prices(StrictModel):
    """A farm's prices. All amounts are in ``currency`` per hour of the named resource.

    Attributes:
        currency: ISO 4217 code (``USD``, ``EUR``, ``GBP``...).
        cpu_core_hour: Price of one CPU core for one hour (core-hour billing).
        ghz_hour: Price of one GHz for one hour (GHz-hour billing, instead of core-hours).
        cpu_ghz: The clock the farm bills a core at, in GHz (needed with ``ghz_hour``).
        gpu_hour: Price of one GPU for one hour; needed when the records used a GPU.
        licence_node_hour: Render licence per node-hour of render tasks; absent means free.
    """

    schema_version: Literal[1] = 1
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code, e.g. USD, EUR")
    cpu_core_hour: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    ghz_hour: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    cpu_ghz: Decimal | None = Field(default=None, gt=0, allow_inf_nan=False, description="billed clock, GHz")
    gpu_hour: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    licence_node_hour: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)

    _source: str = PrivateAttr(default="<prices>")
    _default: bool = PrivateAttr(default=False)

    @property
    def source(self) -> str:
        """The file these prices came from (``<prices>`` when built in code)."""
        return self._source

    @property
    def is_default(self) -> bool:
        """True for :func:`default_prices`: example prices, not a farm's own."""
        return self._default

    @property
    def bills_ghz(self) -> bool:
        """True when CPU is billed per GHz-hour rather than per core-hour."""
        return self.ghz_hour is not None

    def problems(self) -> list[str]:
        """Rules across fields that a field's own bounds cannot express, as ``field: message``."""
        found = []
        if self.cpu_core_hour is None and self.ghz_hour is None:
            found.append("cpu_core_hour: missing (or bill GHz-hours with ghz_hour and cpu_ghz)")
        if self.cpu_core_hour is not None and self.ghz_hour is not None:
            found.append("ghz_hour: given together with cpu_core_hour; a farm bills CPU one way, remove one")
        if self.ghz_hour is not None and self.cpu_ghz is None:
            found.append("cpu_ghz: missing; ghz_hour needs the clock the farm bills a core at (GHz)")
        if self.cpu_ghz is not None and self.ghz_hour is None:
            found.append("cpu_ghz: given without ghz_hour; it only means something for GHz-hour billing")
        return found

    def check(self) -> None:
        """Check the rules across fields.

        Raises:
            ConfigError: naming the prices file and the field.
        """
        found = self.problems()
        if found:
            raise ConfigError(f"invalid Prices: {'; '.join(found)}", path=self.source)


def load_prices(path: str | Path) -> Prices:
    """Read a prices YAML file.

    Raises:
        ConfigError: the file is missing or unreadable, a price is negative or not a number, a
            needed price is missing, or a field is unknown; names the file and the field.
    """
    prices = load_model(Prices, path)
    prices._source = str(path)
    prices.check()
    return prices


def default_prices() -> Prices:
    """The example prices farmplug ships (a copy of ``examples/prices.yaml``), for reports given none.

    Their :attr:`Prices.source` is :data:`DEFAULT_PRICES_SOURCE` and :attr:`Prices.is_default` is
    True, so a page can say the money is at example prices, not the farm's.

    Raises:
        ConfigError: the packaged file is missing or broken (an install problem).
    """
    prices = load_prices(DEFAULT_PRICES_FILE)
    prices._source = DEFAULT_PRICES_SOURCE
    prices._default = True
    return prices


@dataclass(frozen=True)
class CostLine:
    """The cost of the tasks of one (stage, role).

    Hours are floats (measurements); money is exact Decimal in the prices' currency.
    """

    stage: str
    role: str
    tasks: int
    frames: int
    core_hours: float
    ghz_hours: float
    gpu_hours: float
    node_hours: float
    cpu_money: Decimal
    gpu_money: Decimal
    licence_money: Decimal

    @property
    def total(self) -> Decimal:
        return self.cpu_money + self.gpu_money + self.licence_money

    @property
    def has_work(self) -> bool:
        return self.core_hours > 0 or self.gpu_hours > 0 or self.node_hours > 0

    def __add__(self, other: CostLine) -> CostLine:
        return CostLine(
            stage=self.stage, role=self.role, tasks=self.tasks + other.tasks, frames=self.frames + other.frames,
            core_hours=self.core_hours + other.core_hours, ghz_hours=self.ghz_hours + other.ghz_hours,
            gpu_hours=self.gpu_hours + other.gpu_hours, node_hours=self.node_hours + other.node_hours,
            cpu_money=self.cpu_money + other.cpu_money, gpu_money=self.gpu_money + other.gpu_money,
            licence_money=self.licence_money + other.licence_money,
        )


@dataclass(frozen=True)
class CostBreakdown:
    """What a set of tasks cost, line by line (one line per stage and role, sorted)."""

    currency: str
    lines: tuple[CostLine, ...]

    def _sum(self, name: str, *, role: str | None = None):
        zero = Decimal(0) if name.endswith("money") or name == "total" else 0.0
        return sum((getattr(line, name) for line in self.lines if role is None or line.role == role), zero)

    @property
    def core_hours(self) -> float:
        return self._sum("core_hours")

    @property
    def ghz_hours(self) -> float:
        return self._sum("ghz_hours")

    @property
    def gpu_hours(self) -> float:
        return self._sum("gpu_hours")

    @property
    def node_hours(self) -> float:
        return self._sum("node_hours")

    @property
    def cpu_money(self) -> Decimal:
        return self._sum("cpu_money")

    @property
    def gpu_money(self) -> Decimal:
        return self._sum("gpu_money")

    @property
    def licence_money(self) -> Decimal:
        return self._sum("licence_money")

    @property
    def total(self) -> Decimal:
        """All money, exact (round only to display it)."""
        return self._sum("total")

    def total_for(self, role: str) -> Decimal:
        """All money of the tasks of one role (``plan``, ``reference``...)."""
        return self._sum("total", role=role)

    @property
    def has_work(self) -> bool:
        return any(line.has_work for line in self.lines)

    @property
    def note(self) -> str | None:
        """Why the total is zero though work was done (every price that applied is zero), else None.

        A zero total with real work can only come from zero prices; the report says so rather than
        dividing by it.
        """
        if self.total == 0 and self.has_work:
            return f"total is 0 {self.currency}: every price that applies to this work is zero"
        return None

    def share(self, line: CostLine) -> float | None:
        """The fraction of the total that ``line`` costs; None when the total is zero."""
        return float(line.total / self.total) if self.total else None

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return combine([self, other])


def combine(breakdowns: Iterable[CostBreakdown]) -> CostBreakdown:
    """Sum breakdowns (e.g. one per shot) into one, line by line.

    Raises:
        ConfigError: the breakdowns are in different currencies, or there are none.
    """
    merged: dict[tuple[str, str], CostLine] = {}
    currency = None
    for part in breakdowns:
        if currency is not None and part.currency != currency:
            raise ConfigError(f"cannot add costs in {currency} and {part.currency}")
        currency = part.currency
        for line in part.lines:
            key = (line.stage, line.role)
            merged[key] = merged[key] + line if key in merged else line
    if currency is None:
        raise ConfigError("no cost breakdowns to combine")
    return CostBreakdown(currency=currency, lines=tuple(merged[k] for k in sorted(merged)))


@dataclass
class _Tally:
    tasks: int = 0
    frames: int = 0
    core_s: float = 0.0
    gpu_s: float = 0.0
    node_s: float = 0.0


def _require(prices: Prices, field: str, why: str) -> Decimal:
    value = getattr(prices, field)
    if value is None:
        raise ConfigError(f"{field}: missing, but {why}", path=prices.source)
    return value


def _hours(seconds: float) -> Decimal:
    return Decimal(repr(seconds)) / _SECONDS_PER_HOUR


def cost_of(records: Iterable[TimingRecord], prices: Prices) -> CostBreakdown:
    """The cost of the tasks behind ``records``, per stage and role, overheads included.

    ``records`` is read once, so a generator that reads records file by file keeps memory flat.

    Args:
        records: One timing record per task.
        prices: The farm's prices (see the module docstring for what is billed how).

    Returns:
        A breakdown whose lines are sorted by (stage, role).

    Raises:
        ConfigError: the prices break a rule across fields, or a price the work needs is missing
            (``gpu_hour`` when a task used the GPU); names the prices file and the field.
    """
    prices.check()
    tallies: dict[tuple[str, str], _Tally] = {}
    for record in records:
        tally = tallies.setdefault((record.stage, record.role), _Tally())
        tally.tasks += 1
        tally.frames += len(record.frames)
        tally.core_s += record.cpu_s
        wall = record.wall_s
        if any(f.gpu_s > 0 for f in record.frames):
            tally.gpu_s += wall
        if record.stage in RENDER_STAGES:
            tally.node_s += wall

    lines = []
    for (stage, role), tally in sorted(tallies.items()):
        core_h = _hours(tally.core_s)
        gpu_h = _hours(tally.gpu_s)
        node_h = _hours(tally.node_s)
        if prices.bills_ghz:
            ghz_h = core_h * prices.cpu_ghz
            cpu_money = ghz_h * prices.ghz_hour
        else:
            ghz_h = Decimal(0)
            cpu_money = core_h * prices.cpu_core_hour
        gpu_money = Decimal(0)
        if tally.gpu_s > 0:
            why = f"the {stage} tasks ({role}) used a GPU for {float(gpu_h):.4g} h"
            gpu_money = gpu_h * _require(prices, "gpu_hour", why)
        licence_money = node_h * prices.licence_node_hour if prices.licence_node_hour is not None else Decimal(0)
        lines.append(CostLine(
            stage=stage, role=role, tasks=tally.tasks, frames=tally.frames,
            core_hours=float(core_h), ghz_hours=float(ghz_h), gpu_hours=float(gpu_h), node_hours=float(node_h),
            cpu_money=cpu_money, gpu_money=gpu_money, licence_money=licence_money,
        ))
    return CostBreakdown(currency=prices.currency, lines=tuple(lines))


def round_money(amount: Decimal) -> Decimal:
    """Round to cents, half up (for display only: sums stay exact)."""
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


def format_money(amount: Decimal, currency: str) -> str:
    """``1234.5, "EUR"`` -> ``"1,234.50 EUR"``: rounded to cents, half up."""
    return f"{round_money(amount):,.2f} {currency}"
