"""Calibration as a search: the cheapest candidates first, stopping as soon as the answer is known.

Quality rises with samples, and so does cost. So for each structure (frame step, stages and
their settings) the candidates are tried from the fewest samples up, in rounds: the first round
renders the reference and the cheapest candidate of the first structure; each later round tries
the cheapest of every structure not yet tried (priced from a measured one), and for each
structure still open the next one up. A structure closes when

* one of its candidates meets the target (more samples cannot be cheaper and still be needed),
* its last candidate tried already costs more than a candidate that meets the target (more
  samples cannot be cheaper), or
* its next candidate would take the calibration over its budget (a share of the full render's
  predicted cost, the reference renders included).

Every candidate not tried is listed in ``calibration.json`` with the reason. The functions here
are pure (no I/O): :func:`farmplug.execute.run_calibration` runs the rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from farmplug.calibrate import CalibrationResult, Candidate, CandidateResult, SkippedCandidate


def structures(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """The candidates grouped by structure (frame step and stages), each group from the fewest
    samples up; groups in the order their first candidate was given."""
    groups: dict[tuple, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.frame_step, c.post, c.variants, c.resolution_scale), []).append(c)
    return [sorted(g, key=lambda c: c.samples_factor) for g in groups.values()]


def calibration_spend(result: CandidateResult) -> float:
    """What measuring ``result`` cost (core-seconds of its calibration tasks)."""
    return sum(layer.core_s_per_frame * layer.frames + layer.overhead_core_s * layer.tasks
               for layer in result.measured.layers.values())


def predicted_spend(tried: CandidateResult, reference_core_s_per_frame: float, full_samples: int,
                    samples: int) -> float:
    """What measuring a candidate of ``tried``'s structure at ``samples`` would cost.

    Its tasks are ``tried``'s, with the render's per-frame cost moved along the line through
    ``tried``'s render (at its samples) and the reference's (at the shot's): render cost is a
    fixed part per frame plus a part per sample.
    """
    render = tried.measured.layers.get("render")
    if render is None or full_samples <= tried.samples:
        return calibration_spend(tried)
    per_sample = max(0.0, (reference_core_s_per_frame - render.core_s_per_frame) / (full_samples - tried.samples))
    return calibration_spend(tried) + render.frames * per_sample * (samples - tried.samples)


@dataclass(frozen=True)
class Round:
    """What the next round tries, and what it leaves out for good (name -> skipped record)."""

    tries: list[Candidate]
    skipped: dict[str, SkippedCandidate]


def _skip(c: Candidate, reason: str) -> SkippedCandidate:
    return SkippedCandidate(name=c.name, samples_factor=c.samples_factor, frame_step=c.frame_step, reason=reason)


def next_round(groups: Sequence[Sequence[Candidate]], result: CalibrationResult | None, *,
               samples_of: dict[str, int], budget_core_s: float | None, spent_core_s: float,
               work_of: dict[str, int] | None = None) -> Round:
    """The candidates to try next, given what is measured so far (``result``; None before any).

    Args:
        groups: :func:`structures` of the candidates.
        result: The calibration so far: every candidate tried, measured and judged.
        samples_of: Each candidate's samples per pixel on this shot.
        work_of: Each candidate's calibration tasks' frames (a temporal denoiser renders the
            neighbours of each check frame too): an untried structure is priced as a measured
            candidate's spend times the ratio of their frames. None: the same for all.
        budget_core_s: What the calibration may spend in all (None: no budget).
        spent_core_s: What it has spent so far (the reference renders and every round).
    """
    measured = {c.name: c for c in result.candidates} if result else {}
    passing = [c for c in measured.values() if c.meets_target]
    best = min(passing, key=lambda c: c.cost.total_core_s) if passing else None
    tries: list[Candidate] = []
    skipped: dict[str, SkippedCandidate] = {}
    left = None if budget_core_s is None else budget_core_s - spent_core_s
    for group in groups:
        done = [c for c in group if c.name in measured]
        if not done:
            if result is None:
                # Round one: the reference and the first structure only, so every later
                # structure's first candidate can be priced from a measured one.
                if not tries:
                    tries.append(group[0])
                continue
            if left is not None:
                nearest = min(measured.values(), key=lambda m: abs(m.samples_factor - group[0].samples_factor))
                need = calibration_spend(nearest)
                if work_of and work_of.get(nearest.name):
                    need *= work_of.get(group[0].name, work_of[nearest.name]) / work_of[nearest.name]
                if need > left:
                    budget = budget_core_s or 0.0
                    for c in group:
                        skipped[c.name] = _skip(c, f"over the calibration budget: {group[0].name} would take about "
                                                   f"{need:.1f} core-s (as {nearest.name} did), "
                                                   f"{max(left, 0.0):.1f} of {budget:.1f} left")
                    continue
                left -= need
            tries.append(group[0])
            continue
        last = measured[done[-1].name]
        rest = [c for c in group if c.name not in measured]
        if not rest:
            continue
        if last.meets_target:
            for c in rest:
                skipped[c.name] = _skip(c, f"{last.name}, with fewer samples and the same frame step and stages, "
                                           "meets the target")
            continue
        if best is not None and last.cost.total_core_s >= best.cost.total_core_s:
            for c in rest:
                skipped[c.name] = _skip(c, f"{last.name}, with fewer samples, already costs "
                                           f"{last.cost.total_core_s:.1f} core-s, more than {best.name} "
                                           f"({best.cost.total_core_s:.1f}) which meets the target")
            continue
        following = rest[0]
        if left is not None and result is not None:
            need = predicted_spend(last, result.reference.core_s_per_frame, result.reference.samples,
                                   samples_of[following.name])
            if need > left:
                budget = budget_core_s or 0.0
                for c in rest:
                    skipped[c.name] = _skip(
                        c, f"over the calibration budget: {following.name} would take about {need:.1f} core-s, "
                           f"{max(left, 0.0):.1f} of {budget:.1f} left")
                continue
            left -= need
        tries.append(following)
    return Round(tries=tries, skipped=skipped)
