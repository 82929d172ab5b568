"""``farmplug train upscale --data DIR --out MODEL.safetensors``: train (or fine-tune) farmplug's own model.

Seeded and resumable (run the same command again after a stop: it carries on from the
checkpoint beside ``--out``); writes the weights with their metadata header and a training
report (``MODEL.report.json`` / ``.md``: loss curve, validation PSNR and HDR-FLIP against the
bicubic, nearest and albedo-demodulated baselines). ``--init MODEL`` fine-tunes from weights.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from farmplug.cli.common import print_json
from farmplug.worker import add_common, help_formatter

MODELS = ("upscale",)


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("train", help="train or fine-tune a model of farmplug's own from a rendered dataset",
                         formatter_class=help_formatter)
    add_common(p)
    p.add_argument("model", choices=MODELS, help="which model to train")
    p.add_argument("--data", type=Path, required=True, help="a dataset folder made by `farmplug dataset`")
    p.add_argument("--out", type=Path, required=True, help="the weights file to write (.safetensors)")
    p.add_argument("--init", type=Path, default=None, help="start from these weights (fine-tuning)")
    p.add_argument("--iterations", type=int, default=2000, help="training iterations")
    p.add_argument("--batch", type=int, default=8, help="crops per iteration")
    p.add_argument("--crop", type=int, default=48, help="crop size in full-resolution pixels")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the crops and the initial weights")
    p.add_argument("--val-every", type=int, default=250, help="validate every N iterations")
    p.add_argument("--checkpoint-every", type=int, default=100, help="write the resumable checkpoint every N iterations")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--weights-version", default="1", help="the version written in the weights' metadata")
    p.add_argument("--keep", choices=("last", "best"), default="last",
                   help="the weights written: after the last iteration, or of the best validation (early stopping)")
    p.add_argument("--json", action="store_true", help="print the report's figures as JSON")


def run(args: argparse.Namespace) -> int:
    from farmplug.errors import FarmplugError
    from farmplug.progress import progress_bar
    from farmplug.upscale.train import TrainSettings, report_paths, train

    if args.out.suffix != ".safetensors":
        raise FarmplugError("the weights file must end in .safetensors", path=args.out)
    if args.iterations < 1 or args.batch < 1 or args.crop < 8 or args.crop % 2:
        raise FarmplugError("--iterations and --batch must be >= 1, --crop even and >= 8")
    settings = TrainSettings(iterations=args.iterations, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                             val_every=args.val_every, checkpoint_every=args.checkpoint_every, threads=args.threads,
                             version=args.weights_version, keep=args.keep)
    command = shlex.join(["farmplug", *getattr(args, "argv", sys.argv[1:])])
    with progress_bar(args.iterations, f"train {args.model}", unit="it") as bar:
        def tick(done: int, loss: float) -> None:
            bar.n = done
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.refresh()

        report = train(args.data, args.out, settings, init=args.init, command=command, progress=tick)
    v = report["validation"]
    figures = {name: v[name] for name in ("model", "demodulated", "bicubic", "nearest")}
    if args.json:
        print_json({"weights": str(args.out), "report": str(report_paths(args.out)[0]), "validation": figures})
    else:
        print(f"weights: {args.out}  (report {report_paths(args.out)[1]})")
        for name, m in figures.items():
            print(f"  {name:12s} PSNR {m['psnr']:.2f} dB  FLIP {m.get('flip', float('nan')):.4f}")
    return 0
