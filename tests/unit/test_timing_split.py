"""The fixed/per-sample split of render cost: measured per record, fitted across records (synthetic records)."""

from __future__ import annotations

import pytest

from farmplug.errors import FarmplugError
from farmplug.timing import CostSplit, FrameTiming, RenderCostSplit, TimingRecord, cost_split, read_timing, write_timing


def _frames(cpu: list[float], sampling: list[float | None] | None = None) -> list[FrameTiming]:
    sampling = sampling or [None] * len(cpu)
    return [FrameTiming(frame=i + 1, wall_s=c, cpu_s=c, sampling_cpu_s=s) for i, (c, s) in enumerate(zip(cpu, sampling, strict=True))]


def _record(samples: int, cpu: list[float], *, overhead: float = 0.0, sampling: list[float | None] | None = None,
            measured: bool = False, persistent: bool = False) -> TimingRecord:
    frames = _frames(cpu, sampling)
    split = RenderCostSplit.from_frames(frames, samples=samples, persistent_data=persistent) if measured else None
    return TimingRecord(task=f"render-{samples}", stage="render", backend="test", started_at=0.0, finished_at=1.0,
                        overhead_cpu_s=overhead, frames=frames, render_cost=split, settings={"samples": samples})


def test_fit_recovers_a_linear_cost_exactly() -> None:
    # 1.5 core-s per frame plus 0.08 per sample, at 4, 16 and 256 samples.
    records = [_record(s, [1.5 + 0.08 * s] * 3) for s in (4, 16, 256)]
    split = cost_split(records)
    assert split.method == "fit"
    assert split.fixed_cpu_s_per_frame == pytest.approx(1.5)
    assert split.cpu_s_per_sample == pytest.approx(0.08)
    assert split.frames == 9 and split.sample_counts == (4, 16, 256)
    assert split.cpu_s(4) == pytest.approx(1.82)
    assert split.fixed_share(4) == pytest.approx(1.5 / 1.82)


def test_fit_is_least_squares_over_noisy_frames() -> None:
    # Frames scattered symmetrically about 0.5 + 0.1 x samples: the fit finds the line.
    records = [_record(4, [0.9 - 0.05, 0.9 + 0.05]), _record(64, [6.9 + 0.2, 6.9 - 0.2])]
    split = cost_split(records)
    assert split.fixed_cpu_s_per_frame == pytest.approx(0.5)
    assert split.cpu_s_per_sample == pytest.approx(0.1)


def test_fit_weights_frames_not_records() -> None:
    # A 1-frame record at 4 spp and a 3-frame record at 64 spp on the same line, plus an outlier
    # frame: each frame is one point, so the 3-frame record pulls three times as hard.
    on_line = cost_split([_record(4, [1.0]), _record(64, [7.0, 7.0, 7.0])])
    assert (on_line.fixed_cpu_s_per_frame, on_line.cpu_s_per_sample) == (pytest.approx(0.6), pytest.approx(0.1))
    pulled = cost_split([_record(4, [1.0]), _record(64, [7.0, 7.0, 10.0])])
    assert pulled.cpu_s_per_sample > on_line.cpu_s_per_sample


def test_overhead_is_shared_by_a_task_s_frames_only_when_asked() -> None:
    records = [_record(4, [1.0, 1.0], overhead=0.8), _record(64, [7.0, 7.0, 7.0, 7.0], overhead=0.8)]
    without = cost_split(records)
    with_overhead = cost_split(records, include_overhead=True)
    assert without.fixed_cpu_s_per_frame == pytest.approx(0.6)
    # 0.4 per frame at 4 spp, 0.2 at 64 spp: the line through (4, 1.4) and (64, 7.2).
    assert with_overhead.cpu_s_per_sample == pytest.approx(5.8 / 60)
    assert with_overhead.fixed_cpu_s_per_frame == pytest.approx(1.4 - 4 * 5.8 / 60)
    assert with_overhead.cpu_s(64) == pytest.approx(7.2)
    assert with_overhead.cpu_s(4) == pytest.approx(1.4)


def test_a_negative_intercept_is_clamped_to_zero() -> None:
    split = cost_split([_record(10, [0.9]), _record(20, [2.1])])
    assert split.fixed_cpu_s_per_frame == 0.0
    assert split.cpu_s_per_sample == pytest.approx(0.12)


def test_one_sample_count_pools_the_measured_splits() -> None:
    # Frame cost 2.0 = 1.6 fixed + 4 x 0.1 sampling, and 0.5 = 0.1 + 0.4 (persistent data, later frames).
    first = _record(4, [2.0, 0.5, 0.5], sampling=[0.4, 0.4, 0.4], measured=True, persistent=True)
    second = _record(4, [2.0], sampling=[0.4], measured=True)
    assert first.render_cost is not None
    assert first.render_cost.fixed_cpu_s_first_frame == pytest.approx(1.6)
    assert first.render_cost.fixed_cpu_s_later_frames == pytest.approx(0.1)
    assert first.render_cost.fixed_cpu_s_per_frame == pytest.approx(0.6)
    assert first.render_cost.cpu_s_per_sample == pytest.approx(0.1)
    split = cost_split([first, second])
    assert split.method == "render-stats"
    assert split.fixed_cpu_s_per_frame == pytest.approx((0.6 * 3 + 1.6) / 4)
    assert split.cpu_s_per_sample == pytest.approx(0.1)
    assert split.frames == 4
    with_overhead = cost_split([_record(4, [2.0, 2.0], sampling=[0.4, 0.4], overhead=1.0, measured=True)],
                               include_overhead=True)
    assert with_overhead.fixed_cpu_s_per_frame == pytest.approx(1.6 + 0.5)


def test_measured_split_needs_every_frame_s_sampling_time() -> None:
    assert RenderCostSplit.from_frames(_frames([2.0, 2.0], [0.4, None]), samples=4, persistent_data=False) is None
    assert RenderCostSplit.from_frames([], samples=4, persistent_data=False) is None
    one = RenderCostSplit.from_frames(_frames([2.0], [0.4]), samples=4, persistent_data=False)
    assert one is not None and one.fixed_cpu_s_later_frames is None


@pytest.mark.parametrize(
    ("records", "message"),
    [
        pytest.param([], "no render frames", id="nothing"),
        pytest.param([_record(4, [1.0]), _record(4, [1.2])], "every frame was rendered at 4 samples", id="one-count-unmeasured"),
    ],
)
def test_what_cannot_be_split_is_an_error(records: list[TimingRecord], message: str) -> None:
    with pytest.raises(FarmplugError, match=message):
        cost_split(records)


def test_a_record_without_a_sample_count_is_named() -> None:
    record = _record(4, [1.0]).model_copy(update={"settings": {}})
    with pytest.raises(FarmplugError, match="render-4"):
        cost_split([record, _record(16, [2.0])])


def test_records_without_the_new_fields_still_read(tmp_path) -> None:
    # A record written before the split existed (no sampling_cpu_s, no render_cost) validates.
    old = tmp_path / "old.timing.json"
    old.write_text('{"schema_version": 1, "task": "r", "stage": "render", "backend": "b", "started_at": 0,'
                   ' "finished_at": 1, "frames": [{"frame": 1, "wall_s": 1, "cpu_s": 1}], "settings": {"samples": 4}}')
    record = read_timing(old)
    assert record.render_cost is None and record.frames[0].sampling_cpu_s is None
    new = _record(4, [2.0], sampling=[0.4], measured=True)
    write_timing(new, tmp_path / "new.timing.json")
    assert read_timing(tmp_path / "new.timing.json") == new


def test_cost_split_is_a_frozen_value() -> None:
    split = CostSplit(1.0, 0.1, 3, (4, 16), "fit")
    with pytest.raises(AttributeError):
        split.cpu_s_per_sample = 0.2  # type: ignore[misc]
