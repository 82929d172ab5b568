"""Cost model: prices file validation and the money arithmetic, checked against hand sums."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from farmplug.cost import (
    DEFAULT_PRICES_FILE,
    DEFAULT_PRICES_SOURCE,
    Prices,
    combine,
    cost_of,
    default_prices,
    format_money,
    load_prices,
    round_money,
)
from farmplug.errors import ConfigError
from farmplug.timing import FrameTiming, TimingRecord

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prices.yaml"


def record(task: str, stage: str, *, role: str = "plan", overhead_wall: float, overhead_cpu: float,
           frames: list[tuple[float, float, float]]) -> TimingRecord:
    return TimingRecord(
        task=task, stage=stage, role=role, backend="test", host="h", cores=32, started_at=0.0, finished_at=1.0,
        overhead_wall_s=overhead_wall, overhead_cpu_s=overhead_cpu,
        frames=[FrameTiming(frame=i + 1, wall_s=w, cpu_s=c, gpu_s=g) for i, (w, c, g) in enumerate(frames)],
    )


def render_record(task: str = "render-0001-0002", role: str = "plan") -> TimingRecord:
    # CPU: 360 + 2 x 1620 = 3600 core-s = 1 core-hour. Wall: 60 + 2 x 1770 = 3600 s = 1 node-hour.
    return record(task, "render", role=role, overhead_wall=60, overhead_cpu=360, frames=[(1770, 1620, 0)] * 2)


def denoise_record() -> TimingRecord:
    # CPU: 60 + 2 x 60 = 180 core-s = 0.05 core-hour. Wall 600 + 2 x 600 = 1800 s on the GPU = 0.5 GPU-hour
    # (the model load counts: the GPU is held for the whole task, not just the 2 x 500 s of kernels).
    return record("denoise-0001-0002", "denoise", overhead_wall=600, overhead_cpu=60, frames=[(600, 60, 500)] * 2)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    return path


def test_example_prices_load() -> None:
    prices = load_prices(EXAMPLE)
    assert prices.currency == "USD" and prices.cpu_core_hour is not None and not prices.bills_ghz


def test_default_prices_are_the_example_prices_and_say_so() -> None:
    # The package's copy must stay the example file, value for value.
    assert yaml.safe_load(DEFAULT_PRICES_FILE.read_text()) == yaml.safe_load(EXAMPLE.read_text())
    prices = default_prices()
    assert prices.model_dump() == load_prices(EXAMPLE).model_dump()
    assert prices.is_default and prices.source == DEFAULT_PRICES_SOURCE
    assert not load_prices(EXAMPLE).is_default and load_prices(EXAMPLE).source == str(EXAMPLE)


def test_core_gpu_and_licence_hours_and_money() -> None:
    prices = Prices(currency="EUR", cpu_core_hour=0.05, gpu_hour=2, licence_node_hour=1.5)
    cost = cost_of([render_record(), denoise_record()], prices)
    render, denoise = cost.lines[1], cost.lines[0]
    assert (denoise.stage, render.stage) == ("denoise", "render")
    assert render.core_hours == pytest.approx(1.0) and render.node_hours == pytest.approx(1.0)
    assert render.gpu_hours == 0 and render.gpu_money == 0
    assert render.cpu_money == Decimal("0.05") and render.licence_money == Decimal("1.5")
    assert denoise.core_hours == pytest.approx(0.05) and denoise.gpu_hours == pytest.approx(0.5)
    assert denoise.node_hours == 0 and denoise.licence_money == 0  # licence is for render tasks only
    assert denoise.cpu_money == Decimal("0.0025") and denoise.gpu_money == Decimal("1.0")
    assert cost.total == Decimal("2.5525")
    assert format_money(cost.total, cost.currency) == "2.55 EUR"
    assert cost.share(render) == pytest.approx(1.55 / 2.5525)
    assert cost.note is None


def test_ghz_hour_billing() -> None:
    # 1.05 core-hours x 2.5 GHz = 2.625 GHz-hours x 0.01 = 0.02625
    prices = Prices(currency="USD", ghz_hour=0.01, cpu_ghz=2.5, gpu_hour=0)
    cost = cost_of([render_record(), denoise_record()], prices)
    assert cost.ghz_hours == pytest.approx(2.625)
    assert cost.cpu_money == Decimal("0.02625")
    assert cost.gpu_money == 0 and cost.licence_money == 0
    assert format_money(cost.total, "USD") == "0.03 USD"


def test_fallback_and_guide_renders_pay_licence_per_node_hour() -> None:
    prices = Prices(currency="USD", cpu_core_hour=0, licence_node_hour=2)
    fallback = record("fallback-0001-0001", "fallback", overhead_wall=900, overhead_cpu=1, frames=[(900, 1, 0)])
    cost = cost_of([fallback, render_record(role="reference")], prices)
    # 1800 s + 3600 s = 1.5 node-hours x 2 = 3
    assert cost.node_hours == pytest.approx(1.5)
    assert cost.total == Decimal(3)
    assert cost.total_for("reference") == Decimal(2)


def test_money_is_exact_until_display() -> None:
    # 1000 tasks of 0.004 each: rounding each line to cents would say 0.00; the exact sum is 4.00.
    prices = Prices(currency="USD", cpu_core_hour=Decimal("0.4"))
    tiny = [record(f"t{i}", f"s{i}", overhead_wall=0, overhead_cpu=36, frames=[]) for i in range(1000)]
    cost = cost_of(tiny, prices)
    assert all(line.total == Decimal("0.004") for line in cost.lines)
    assert cost.total == Decimal("4.000")
    assert format_money(cost.total, "USD") == "4.00 USD"
    assert round_money(Decimal("0.005")) == Decimal("0.01")  # half up
    assert round_money(Decimal("0.0049")) == Decimal("0.00")
    assert format_money(Decimal("1234567.891"), "EUR") == "1,234,567.89 EUR"


def test_zero_prices_with_work_say_so_and_never_divide() -> None:
    cost = cost_of([render_record()], Prices(currency="USD", cpu_core_hour=0, gpu_hour=0))
    assert cost.total == 0 and cost.has_work
    assert "every price" in cost.note
    assert cost.share(cost.lines[0]) is None


def test_no_records_is_an_empty_breakdown() -> None:
    cost = cost_of([], Prices(currency="USD", cpu_core_hour=1))
    assert cost.lines == () and cost.total == 0 and cost.note is None


def test_combine_sums_per_line_and_rejects_mixed_currency() -> None:
    prices = Prices(currency="USD", cpu_core_hour=0.05, gpu_hour=2)
    one = cost_of([render_record(), denoise_record()], prices)
    both = combine([one, one])
    assert both.total == 2 * one.total and both.lines[1].tasks == 2
    assert (one + one).total == both.total
    with pytest.raises(ConfigError, match="USD and EUR"):
        combine([one, cost_of([], Prices(currency="EUR", cpu_core_hour=1))])


def test_gpu_price_missing_where_used_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "schema_version: 1\ncurrency: USD\ncpu_core_hour: 0.01\n")
    prices = load_prices(path)  # fine until GPU work needs it
    assert cost_of([render_record()], prices).total == Decimal("0.01")
    with pytest.raises(ConfigError) as err:
        cost_of([denoise_record()], prices)
    assert str(path) in str(err.value) and "gpu_hour" in str(err.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("currency: USD\ncpu_core_hour: -0.01\ngpu_hour: 1\n", "cpu_core_hour", id="negative-cpu"),
        pytest.param("currency: USD\ncpu_core_hour: 0.01\ngpu_hour: -1\n", "gpu_hour", id="negative-gpu"),
        pytest.param("currency: USD\ncpu_core_hour: 1\nlicence_node_hour: -2\n", "licence_node_hour", id="negative-licence"),
        pytest.param("currency: USD\nghz_hour: -1\ncpu_ghz: 3\n", "ghz_hour", id="negative-ghz"),
        pytest.param("currency: USD\nghz_hour: 0.01\ncpu_ghz: 0\n", "cpu_ghz", id="zero-clock"),
        pytest.param("currency: USD\ngpu_hour: 1\n", "cpu_core_hour", id="missing-cpu"),
        pytest.param("cpu_core_hour: 1\n", "currency", id="missing-currency"),
        pytest.param("currency: dollars\ncpu_core_hour: 1\n", "currency", id="not-iso-4217"),
        pytest.param("currency: USD\nghz_hour: 0.01\n", "cpu_ghz", id="ghz-without-clock"),
        pytest.param("currency: USD\ncpu_ghz: 3\ncpu_core_hour: 1\n", "cpu_ghz", id="clock-without-ghz-price"),
        pytest.param("currency: USD\ncpu_core_hour: 1\nghz_hour: 0.01\ncpu_ghz: 3\n", "ghz_hour", id="billed-twice"),
        pytest.param("currency: USD\ncpu_core_hour: cheap\n", "cpu_core_hour", id="not-a-number"),
        pytest.param("currency: USD\ncpu_core_hour: .nan\n", "cpu_core_hour", id="nan"),
        pytest.param("currency: USD\ncpu_core_hour: 1\ncpu_hour: 2\n", "cpu_hour", id="unknown-field"),
        pytest.param("schema_version: 2\ncurrency: USD\ncpu_core_hour: 1\n", "schema_version", id="future-schema"),
    ],
)
def test_rejected_prices_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_prices(path)
    assert str(path) in str(err.value)
    assert field in str(err.value)


def test_missing_prices_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_prices(tmp_path / "nope.yaml")
