"""Training the guided upscaler: ``farmplug train upscale --data DIR --out MODEL.safetensors``.

Seeded and reproducible: the validation scenes, every batch's crops and flips and the network's
initial weights all follow from ``--seed``, and batch ``i``'s crops from ``(seed, i)`` alone, so a
run resumed from its checkpoint makes the same batches as one that was never stopped. A
checkpoint (``MODEL.ckpt.safetensors``: weights, optimiser state and iteration, no pickle) is
written every ``checkpoint_every`` iterations; run the same command again to carry on.

The loss is L1 on tone-mapped values (Reinhard, then a 1/2.2 power), near to how quality is
measured (PSNR and HDR-FLIP of tone-mapped frames). Validation runs on whole frames of held-out
scenes against bicubic, nearest and albedo-demodulated upsampling. The report
(``MODEL.report.json`` and ``.md``) holds the loss curve and the validation figures.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from farmplug.errors import FarmplugError
from farmplug.schema import atomic_write_text

log = logging.getLogger(__name__)

ARCH = "guided-sr-2x"


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of a training run (recorded in the weights' metadata)."""

    iterations: int = 2000
    batch: int = 8
    crop: int = 48
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.15
    val_every: int = 250
    checkpoint_every: int = 100
    threads: int = 1
    version: str = "1"
    #: ``last``: the weights after the last iteration; ``best``: those of the validation with the
    #: highest PSNR (early stopping: a small show's dataset is learnt by heart long before the end).
    keep: str = "last"


def tonemap_torch(x):
    """The training loss's tone curve (differentiable): Reinhard, then a 1/2.2 power."""
    import torch

    x = torch.clamp(x, min=0.0)
    return torch.pow(x / (1.0 + x) + 1e-4, 1.0 / 2.2)


def split_scenes(names: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, validation) scene names: a seeded choice of ``fraction`` of the scenes (at least one
    each when there are two or more)."""
    names = sorted(names)
    if len(names) < 2:
        return names, names
    rng = np.random.default_rng(seed)
    count = min(len(names) - 1, max(1, round(len(names) * fraction)))
    val = sorted(rng.choice(names, size=count, replace=False).tolist())
    return [n for n in names if n not in val], val


def batch_of(frames: list[dict[str, np.ndarray]], settings: TrainSettings, iteration: int) -> dict[str, np.ndarray]:
    """Batch ``iteration``: random crops (even offsets) and flips, from ``(seed, iteration)`` alone."""
    rng = np.random.default_rng([settings.seed, iteration])
    c = settings.crop
    colors, guides, targets = [], [], []
    for _ in range(settings.batch):
        f = frames[rng.integers(len(frames))]
        _, big_h, big_w = f["target"].shape
        y = int(rng.integers(0, (big_h - c) // 2 + 1)) * 2
        x = int(rng.integers(0, (big_w - c) // 2 + 1)) * 2
        color = f["color"][:, y // 2:(y + c) // 2, x // 2:(x + c) // 2]
        guide = f["guide"][:, y:y + c, x:x + c]
        target = f["target"][:, y:y + c, x:x + c]
        if rng.random() < 0.5:
            color, guide, target = color[:, :, ::-1], guide[:, :, ::-1], target[:, :, ::-1]
        if rng.random() < 0.5:
            color, guide, target = color[:, ::-1], guide[:, ::-1], target[:, ::-1]
        colors.append(color)
        guides.append(guide)
        targets.append(target)
    return {"color": np.ascontiguousarray(np.stack(colors)), "guide": np.ascontiguousarray(np.stack(guides)),
            "target": np.ascontiguousarray(np.stack(targets))}


def _frames_of(shards: dict[str, dict[str, np.ndarray]], names: list[str]) -> list[dict[str, np.ndarray]]:
    out = []
    for name in names:
        data = shards[name]
        for i in range(data["color"].shape[0]):
            out.append({"name": name, "color": data["color"][i], "guide": data["guide"][i],
                        "target": data["target"][i]})
    return out


def evaluate(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], frames: list[dict], *,
             flip: bool = False) -> dict[str, dict[str, float]]:
    """Mean PSNR (and HDR-FLIP with ``flip``) on whole frames: the model against the baselines."""
    from farmplug.quality import flip_hdr, psnr_tonemapped
    from farmplug.upscale.resample import bicubic, demodulated, nearest

    methods: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "model": predict,
        "bicubic": lambda c, g: bicubic(c),
        "nearest": lambda c, g: nearest(c),
        "demodulated": lambda c, g: demodulated(c, g[..., 0:3]),
    }
    sums: dict[str, dict[str, list[float]]] = {m: {"psnr": [], "flip": []} for m in methods}
    for f in frames:
        color, guide = f["color"].transpose(1, 2, 0), f["guide"].transpose(1, 2, 0)
        target = f["target"].transpose(1, 2, 0)
        for name, method in methods.items():
            out = method(color, guide)
            sums[name]["psnr"].append(psnr_tonemapped(target, out))
            if flip:
                sums[name]["flip"].append(flip_hdr(target, out)[0])
    return {m: {k: float(np.mean(v)) for k, v in s.items() if v} for m, s in sums.items()}


def _torch_predict(net, device="cpu"):
    import torch

    def predict(color: np.ndarray, guide: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            c = torch.from_numpy(np.ascontiguousarray(color.transpose(2, 0, 1)[None]))
            g = torch.from_numpy(np.ascontiguousarray(guide.transpose(2, 0, 1)[None]))
            return net(c.to(device), g.to(device))[0].cpu().numpy().transpose(1, 2, 0)

    return predict


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".safetensors") + ".ckpt.safetensors")


def best_path(out: Path) -> Path:
    """Where ``keep: best`` holds the best validation's weights while training runs."""
    return out.with_name(out.name.removesuffix(".safetensors") + ".best.safetensors")


def report_paths(out: Path) -> tuple[Path, Path]:
    stem = out.name.removesuffix(".safetensors")
    return out.with_name(stem + ".report.json"), out.with_name(stem + ".report.md")


def train(data: Path, out: Path, settings: TrainSettings, *, init: Path | None = None, command: str = "",
          progress: Callable[[int, float], None] | None = None) -> dict:
    """Train on the dataset in ``data`` and write the weights to ``out`` (with the report beside it).

    Raises:
        FarmplugError: no dataset, an unreadable ``init``, or a checkpoint from other settings.
    """
    import torch

    from farmplug.nn.registry import architecture
    from farmplug.nn.weights import load_weights, save_weights
    from farmplug.upscale.dataset import load_manifest, load_shards

    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    arch = architecture(ARCH)
    manifest = load_manifest(data)
    shards = load_shards(data)
    if not shards:
        raise FarmplugError("the dataset has no scenes yet", path=data)
    train_names, val_names = split_scenes(list(shards), settings.val_fraction, settings.seed)
    train_frames, val_frames = _frames_of(shards, train_names), _frames_of(shards, val_names)
    smallest = min(min(f["target"].shape[1:]) for f in train_frames)
    if smallest < settings.crop:
        raise FarmplugError(f"crops of {settings.crop} pixels do not fit frames of {smallest}", path=data)

    net = arch.build()
    hparams = dict(arch.hparams)
    start_from = ""
    if init is not None:
        base = load_weights(init)
        if base.arch.name != arch.name:
            raise FarmplugError(f"--init weights are {base.arch.name}, not {arch.name}", path=init)
        net = base.module(eval_mode=False)
        hparams = base.hparams
        start_from = f"{Path(init).name} sha256:{base.sha256[:12]}"
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    ckpt = checkpoint_path(out)
    first, curve, val_curve = 0, [], []
    if ckpt.is_file():
        state = load_weights(ckpt)
        saved = json.loads(state.metadata.get("train_settings") or "{}")
        if saved != asdict(settings) or state.metadata.get("data_manifest") != _manifest_id(data):
            raise FarmplugError("a checkpoint from another training run is in the way (other settings or data); "
                                "remove it or choose another --out", path=ckpt)
        net = state.module(eval_mode=False)
        optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
        optimizer.load_state_dict(_optimizer_state(optimizer, state.optimizer))
        progress_state = json.loads(state.metadata["progress"])
        first, curve, val_curve = progress_state["iteration"], progress_state["curve"], progress_state["val"]
        log.info("resuming from %s at iteration %d", ckpt, first)
    best = best_path(out)
    # The best validation so far (a resumed run finds its weights in the best file).
    best_iteration, best_psnr = max(((i, p) for i, p in val_curve), key=lambda ip: ip[1], default=(0, -math.inf))
    if settings.keep == "best" and val_curve and not best.is_file():
        raise FarmplugError(f"the checkpoint's best weights ({best.name}) are missing; remove the checkpoint to "
                            "start again", path=ckpt)

    def lr_at(i: int) -> float:
        warm = min(1.0, (i + 1) / 50)
        return settings.lr * warm * 0.5 * (1 + math.cos(math.pi * i / max(1, settings.iterations)))

    started = time.perf_counter()
    window: list[float] = []
    net.train()
    for i in range(first, settings.iterations):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(i)
        batch = {k: torch.from_numpy(v) for k, v in batch_of(train_frames, settings, i).items()}
        pred = net(batch["color"], batch["guide"])
        loss = torch.nn.functional.l1_loss(tonemap_torch(pred), tonemap_torch(batch["target"]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        value = float(loss.detach())
        window.append(value)
        done = i + 1
        if done % 25 == 0 or done == settings.iterations:
            curve.append([done, float(np.mean(window))])
            window = []
        if done % settings.val_every == 0 or done == settings.iterations:
            net.eval()
            psnr = evaluate(_torch_predict(net), val_frames)["model"]["psnr"]
            net.train()
            val_curve.append([done, psnr])
            log.info("iteration %d: loss %.4f, validation PSNR %.2f dB", done, value, psnr)
            if settings.keep == "best" and psnr > best_psnr:
                best_iteration, best_psnr = done, psnr
                save_weights(best, arch, net.state_dict(), hparams=hparams, training={})
        if done % settings.checkpoint_every == 0 and done < settings.iterations:
            _save_checkpoint(ckpt, arch, net, optimizer, settings, data, hparams,
                             {"iteration": done, "curve": curve, "val": val_curve})
        if progress:
            progress(done, value)
    seconds = time.perf_counter() - started

    kept = settings.iterations
    if settings.keep == "best" and best_iteration and best_iteration != settings.iterations:
        net = load_weights(best).module(eval_mode=False)
        kept = best_iteration
        log.info("kept the weights of iteration %d (validation PSNR %.2f dB)", kept, best_psnr)
    net.eval()
    metrics = evaluate(_torch_predict(net), val_frames, flip=True)
    summary = {
        "dataset": str(data),
        "dataset_manifest": _manifest_id(data),
        "dataset_command": manifest.get("command", ""),
        "scenes_train": len(train_names),
        "scenes_validation": val_names,
        "frames_train": len(train_frames),
        "frames_validation": len(val_frames),
        "frame_size": list(train_frames[0]["target"].shape[1:][::-1]),
        "samples": manifest.get("settings", {}).get("samples"),
        "settings": asdict(settings),
        "init": start_from,
        "validation": metrics,
        "train_seconds_this_run": round(seconds, 1),
        "iterations": settings.iterations,
        "kept_iteration": kept,
    }
    save_weights(out, arch, net.state_dict(), hparams=hparams, version=settings.version, training=summary,
                 command=command)
    ckpt.unlink(missing_ok=True)
    best.unlink(missing_ok=True)
    report = {**summary, "loss_curve": curve, "validation_psnr_curve": val_curve, "weights": str(out)}
    write_report(out, report)
    return report


def _manifest_id(data: Path) -> str:
    import hashlib

    path = data / "manifest.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _save_checkpoint(ckpt, arch, net, optimizer, settings, data, hparams, progress_state) -> None:
    from farmplug.nn.weights import save_weights

    flat = {}
    for index, entry in optimizer.state_dict()["state"].items():
        for key, value in entry.items():
            flat[f"{index}.{key}"] = value.detach().reshape(-1) if key == "step" else value
    save_weights(ckpt, arch, net.state_dict(), hparams=hparams, optimizer=flat, training={},
                 extra={"train_settings": json.dumps(asdict(settings), sort_keys=True),
                        "data_manifest": _manifest_id(data),
                        "progress": json.dumps(progress_state)})


def _optimizer_state(optimizer, flat: dict[str, np.ndarray]) -> dict:
    import torch

    state: dict[int, dict] = {}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        tensor = torch.from_numpy(np.array(value))
        state.setdefault(int(index), {})[name] = tensor.reshape(()) if name == "step" else tensor
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


def write_report(out: Path, report: dict) -> None:
    """``MODEL.report.json`` and a markdown summary with the validation table and the loss curve."""
    json_path, md_path = report_paths(out)
    atomic_write_text(json_path, json.dumps(report, indent=1) + "\n")
    v = report["validation"]
    lines = [
        f"# Training report: {out.name}",
        "",
        f"- data: `{report['dataset']}` ({report['scenes_train']} training scenes, {report['frames_train']} frames; "
        f"validation scenes {', '.join(report['scenes_validation'])})",
        f"- iterations: {report['iterations']}, batch {report['settings']['batch']} x {report['settings']['crop']} px, "
        f"seed {report['settings']['seed']}, {report['train_seconds_this_run']} s (this run)",
        f"- init: {report['init'] or 'random'}",
        f"- weights kept: iteration {report.get('kept_iteration', report['iterations'])} "
        f"(keep {report['settings'].get('keep', 'last')})",
        "",
        "| method | PSNR (dB) | HDR-FLIP |",
        "| --- | ---: | ---: |",
    ]
    for name in ("model", "demodulated", "bicubic", "nearest"):
        lines.append(f"| {name} | {v[name]['psnr']:.2f} | {v[name].get('flip', float('nan')):.4f} |")
    lines += ["", "Loss (tone-mapped L1), every 25 iterations:", "", "```"]
    lines += [f"{i:6d}  {loss:.4f}" for i, loss in report["loss_curve"]]
    lines += ["```", "", "Validation PSNR:", "", "```"]
    lines += [f"{i:6d}  {p:.2f} dB" for i, p in report["validation_psnr_curve"]]
    lines += ["```", ""]
    atomic_write_text(md_path, "\n".join(lines))
