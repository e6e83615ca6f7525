"""pixelwise against torchvision on the architectures both have: eager CPU latency, same weights.

For each of torchvision's six segmentation models, both networks are built with the same weights
(``pixelwise.models.from_torchvision`` / ``to_torchvision``), and their eval-mode inference on one
batch-1 image is timed *interleaved* (pixelwise, torchvision, pixelwise, ...) in one process under
``torch.inference_mode``, so load on the machine hits both alike; the ratio is of the medians.
The pair is built twice, once torchvision's model first and once pixelwise's, half the runs each:
where the weights land in memory depends on which model is allocated first, and that alone moved
ResNet-101's ratio by up to 7% (either way) in runs of the same code.
Then one training step (forward, cross-entropy on ``out`` plus 0.5 times on ``aux``, backward,
SGD step) of ``deeplabv3_resnet50`` with its auxiliary head, batch 2. The outputs are checked
equal before anything is timed.

    python benchmarks/vs_torchvision.py [--size 512] [--threads 2] [--repeats 20] [--warmup 3]
                                        [--models fcn_resnet50,...] [--train-size 512]

Goal (issue "zoo II"): <= 1.00x torchvision for inference, <= 1.05x for the training step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch.nn import functional as F

from pixelwise.models import create_model, from_torchvision, split_outputs, to_torchvision
from pixelwise.models.interop import TORCHVISION_MODELS


def torchvision_model(name: str, aux: bool) -> torch.nn.Module:
    kwargs = {} if name.startswith("lraspp") else {"aux_loss": aux}
    torch.manual_seed(0)
    return getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=21,
                                                          **kwargs)


def interleaved(calls: dict[str, callable], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each callable, alternating between them ``repeats`` times after ``warmup``."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def model_pair(name: str, torchvision_first: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(pixelwise, torchvision)`` models with the same weights, the one named first allocated first."""
    if torchvision_first:
        tv = torchvision_model(name, aux=False).eval()
        return from_torchvision(tv).eval(), tv
    torch.manual_seed(0)
    ours = create_model(name, 21, **({} if name.startswith("lraspp") else {"aux": False})).eval()
    return ours, to_torchvision(ours).eval()


def inference_row(name: str, size: int, warmup: int, repeats: int) -> dict[str, float]:
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"pixelwise": [], "torchvision": []}
    difference = 0.0
    for torchvision_first in (True, False):
        ours, tv = model_pair(name, torchvision_first)
        with torch.inference_mode():
            difference = max(difference, (ours(x) - tv(x)["out"]).abs().max().item())
            calls = {"pixelwise": lambda: ours(x), "torchvision": lambda: tv(x)}
            for key, value in interleaved(calls, warmup, (repeats + 1) // 2).items():
                times[key] += value
    return {"pixelwise": statistics.median(times["pixelwise"]), "torchvision": statistics.median(times["torchvision"]),
            "max_abs_difference": difference}


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
                  torchvision_output: bool) -> None:
    out = model(x)
    logits, aux = (out["out"], [out["aux"]]) if torchvision_output else split_outputs(out)
    loss = F.cross_entropy(logits, target) + sum(0.5 * F.cross_entropy(a, target) for a in aux)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def training_row(size: int, warmup: int, repeats: int) -> dict[str, float]:
    tv = torchvision_model("deeplabv3_resnet50", aux=True).train()
    ours = from_torchvision(tv).train()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 21, (2, size, size), generator=torch.Generator().manual_seed(1))
    optimizers = {key: torch.optim.SGD(model.parameters(), lr=1e-9, momentum=0.9) for key, model in
                  (("pixelwise", ours), ("torchvision", tv))}
    times = interleaved({
        "pixelwise": lambda: training_step(ours, optimizers["pixelwise"], x, target, False),
        "torchvision": lambda: training_step(tv, optimizers["torchvision"], x, target, True),
    }, warmup, repeats)
    return {key: statistics.median(value) for key, value in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--models", default=",".join(TORCHVISION_MODELS))
    parser.add_argument("--no-training", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, CPU eager, {args.threads} threads, "
          f"float32, median of {args.repeats} interleaved runs (half with each model allocated first) after "
          f"{args.warmup} warm-ups\n")
    print(f"inference, batch 1, {args.size}x{args.size}, torch.inference_mode\n")
    print("| model | pixelwise ms | torchvision ms | ratio | max abs logit difference |")
    print("|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        row = inference_row(name, args.size, args.warmup, args.repeats)
        print(f"| `{name}` | {row['pixelwise'] * 1e3:.1f} | {row['torchvision'] * 1e3:.1f} | "
              f"{row['pixelwise'] / row['torchvision']:.3f}x | {row['max_abs_difference']:.1e} |", flush=True)
    if not args.no_training:
        row = training_row(args.train_size, args.warmup, args.repeats)
        print(f"\ntraining step of deeplabv3_resnet50 with its auxiliary head, batch 2, "
              f"{args.train_size}x{args.train_size}: pixelwise {row['pixelwise'] * 1e3:.0f} ms, torchvision "
              f"{row['torchvision'] * 1e3:.0f} ms, ratio {row['pixelwise'] / row['torchvision']:.3f}x")


if __name__ == "__main__":
    main()
