"""Does training with a CRF-as-RNN layer help? Staged training on the synthetic scenes, as the paper does.

Zheng et al. 2015 train FCN-8s first, then append the CRF-RNN layer and train the whole network
end to end. This script does the same with the library's trainer, on the built-in synthetic
scenes, for each seed:

1. ``pre``: the network alone, ``--pre-epochs`` epochs;
2. from ``pre``'s weights (``init_from``), ``--fine-epochs`` more epochs at a lower rate, twice:
   ``plain`` (the network alone) and ``crf-rnn`` (network + CRF-RNN layer, trained end to end;
   evaluated with the layer, as the paper does);
3. ``plain + dense CRF``: ``plain``'s model with the dense CRF as post-processing
   (:func:`pixelwise.classical.dense_crf` with the layer's initial parameters), the paper's
   "FCN-8s + CRF (not trained)" row;
4. ``--scratch``: also both variants trained from scratch for ``pre + fine`` epochs (the layer
   from the first step: not what the paper does), the layer once with the post-processing weights
   above and once with weaker initial weights (``SCRATCH_WEIGHTS``): strong pairwise terms on an
   untrained network's logits smooth away the small objects it has yet to learn.

It prints validation mIoU per seed and the mean, and the training time per epoch of the two
fine-tuning variants (the CRF layer's cost). Single-threaded torch by default (``--threads``).

    python benchmarks/crf_rnn.py [--seeds 0 1 2] [--size 96] [--pre-epochs 10] [--fine-epochs 5]
                                 [--model fcn8s_tiny] [--scratch] [--out runs/bench_crf_rnn]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from pixelwise.classical import crf_postprocess
from pixelwise.engine import TrainConfig, evaluate, load_model, train
from pixelwise.engine.builders import build_datasets

# The layer's kernel parameters: dense_crf's defaults (DeepLab's), which suit these scenes better
# than the released CRF-RNN model's (bi_xy_std 160, bi_rgb_std 3, bi_w 5, tuned on PASCAL VOC).
CRF = {"iterations": 5, "pos_xy_std": 3.0, "pos_w": 3.0, "bi_xy_std": 80.0, "bi_rgb_std": 13.0, "bi_w": 10.0}
SCRATCH_WEIGHTS = {"pos_w": 1.0, "bi_w": 2.0}  # the learnable kernel weights' start when training from scratch


def config(args: argparse.Namespace, seed: int, name: str, **changes) -> TrainConfig:
    values = dict(model=args.model, dataset="synthetic",
                  dataset_kwargs={"size": args.size, "num_samples": args.samples}, batch_size=8, crop=args.size,
                  scale=(1.0, 1.0), optimizer="adamw", lr=3e-3, device="cpu", seed=seed,
                  out=str(Path(args.out) / f"seed{seed}" / name))
    values.update(changes)
    values["eval_every"] = values.get("epochs", 1)
    return TrainConfig(**values)


def run(config: TrainConfig) -> tuple[float, float]:
    """Train; return (validation mIoU after the last epoch, training seconds per epoch)."""
    started = time.perf_counter()
    summary = train(config, overwrite=True, progress=False)
    return summary["last"]["miou"], (time.perf_counter() - started) / config.epochs


def with_dense_crf(run_dir: Path, config: TrainConfig) -> float:
    model, checkpoint = load_model(run_dir / "last.pt")
    _, val_set = build_datasets(config)
    loader = torch.utils.data.DataLoader(val_set, batch_size=1)
    hooks = crf_postprocess("dense", **CRF)
    return evaluate(model, loader, num_classes=checkpoint["num_classes"], postprocess=hooks.evaluate,
                    progress=False)["miou"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="fcn8s_tiny")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--samples", type=int, default=64, help="training scenes (validation: the dataset's own)")
    parser.add_argument("--pre-epochs", type=int, default=10)
    parser.add_argument("--fine-epochs", type=int, default=5)
    parser.add_argument("--fine-lr", type=float, default=5e-4)
    parser.add_argument("--scratch", action="store_true", help="also train both variants from scratch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench_crf_rnn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {"plain": [], "crf-rnn": []}
    for seed in args.seeds:
        pre = config(args, seed, "pre", epochs=args.pre_epochs)
        results = {"pre": run(pre)[0]}
        init = str(Path(pre.out) / "last.pt")
        for name, crf in (("plain", False), ("crf-rnn", True)):
            stage = config(args, seed, name, epochs=args.fine_epochs, lr=args.fine_lr, init_from=init,
                           crf_rnn=crf, crf_rnn_kwargs=CRF if crf else {})
            results[name], per_epoch = run(stage)
            seconds[name].append(per_epoch)
        results["plain + dense CRF"] = with_dense_crf(Path(config(args, seed, "plain").out), pre)
        if args.scratch:
            epochs = args.pre_epochs + args.fine_epochs
            results["scratch plain"] = run(config(args, seed, "scratch_plain", epochs=epochs))[0]
            results["scratch crf-rnn"] = run(config(args, seed, "scratch_crf", epochs=epochs, crf_rnn=True,
                                                    crf_rnn_kwargs=CRF))[0]
            results["scratch crf-rnn weak"] = run(config(args, seed, "scratch_crf_weak", epochs=epochs, crf_rnn=True,
                                                         crf_rnn_kwargs={**CRF, **SCRATCH_WEIGHTS}))[0]
        for name, value in results.items():
            rows.setdefault(name, []).append(value)
        print(f"seed {seed}: " + ", ".join(f"{name} {value:.4f}" for name, value in results.items()), flush=True)

    print(f"\n{args.model}, synthetic scenes {args.size}x{args.size}, {args.samples} training scenes, "
          f"{args.pre_epochs} + {args.fine_epochs} epochs, seeds {args.seeds}; CRF-RNN {CRF}")
    print(f"{'variant':<22} {'mean mIoU':>9}  per seed")
    for name, values in rows.items():
        print(f"{name:<22} {statistics.mean(values):9.4f}  " + " ".join(f"{v:.4f}" for v in values))
    plain, crf = statistics.mean(seconds["plain"]), statistics.mean(seconds["crf-rnn"])
    print(f"fine-tuning seconds per epoch (incl. validation): plain {plain:.2f}, crf-rnn {crf:.2f} "
          f"({crf / plain:.1f}x)")


if __name__ == "__main__":
    main()
