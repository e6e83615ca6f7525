"""Time ``ConfusionMatrix.update`` + ``compute`` against references measured in the same run.

References: torchmetrics ``MulticlassJaccardIndex(num_classes, ignore_index=255,
validate_args=False)`` and a bare ``numpy.bincount`` confusion matrix (mask the ignored
pixels, ``bincount(target * C + pred)``). Inputs: random int64 label maps, 8 x 1024 x 2048,
19 classes, about 5% of the targets set to 255. The matrices and mIoUs are first checked
to agree (this is also the warm-up); each timing is then the median of ``--repeats`` runs,
taken round-robin so that load on the machine hits every contender alike.

    python benchmarks/metrics.py [--repeats 7] [--threads N] [--batch 8] [--height 1024] [--width 2048]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from pixelwise.metrics import ConfusionMatrix

IGNORE = 255


def make_labels(shape: tuple[int, ...], num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random int64 ``(pred, target)`` with about 5% of the targets ignored."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, shape, generator=generator)
    target[torch.rand(shape, generator=generator) < 0.05] = IGNORE
    pred = torch.randint(0, num_classes, shape, generator=generator)
    return pred, target


def run_pixelwise(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[np.ndarray, float]:
    metric = ConfusionMatrix(num_classes, ignore_index=IGNORE)
    metric.update(pred, target)
    return metric.matrix.numpy(), metric.compute()["miou"]


def run_torchmetrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[np.ndarray, float]:
    metric = MulticlassJaccardIndex(num_classes=num_classes, ignore_index=IGNORE, validate_args=False)
    metric.update(pred, target)
    return metric.confmat.numpy(), metric.compute().item()


def run_numpy(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, float]:
    valid = target != IGNORE
    counts = np.bincount(target[valid] * num_classes + pred[valid], minlength=num_classes**2)
    matrix = counts.reshape(num_classes, num_classes)
    hits = np.diag(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = hits / (matrix.sum(0) + matrix.sum(1) - hits)
    return matrix, float(np.nanmean(iou))


def median_ms(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each contender; the repeats go round-robin so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, function in contenders.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def check_agreement(results: dict[str, tuple[np.ndarray, float]]) -> None:
    reference_matrix, reference_miou = results["numpy.bincount"]
    for name, (matrix, miou) in results.items():
        if not np.array_equal(matrix, reference_matrix):
            raise AssertionError(f"{name}: confusion matrix differs from numpy.bincount")
        if not np.isclose(miou, reference_miou, rtol=1e-5):
            raise AssertionError(f"{name}: mIoU {miou} differs from numpy.bincount's {reference_miou}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser.parse_args()


def print_table(times: dict[str, float], args: argparse.Namespace) -> None:
    ours = times["pixelwise ConfusionMatrix"]
    print(f"{args.batch}x{args.height}x{args.width}, {args.classes} classes, ~5% ignored, int64 labels; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats}")
    print("confusion matrices and mIoUs agree across all implementations")
    print(f"{'implementation':<27} {'ms':>9} {'pixelwise / it':>15}")
    for name, milliseconds in times.items():
        print(f"{name:<27} {milliseconds:>9.1f} {ours / milliseconds:>15.2f}")
    print(f"goal: pixelwise / torchmetrics < 1 -> {ours / times['torchmetrics JaccardIndex']:.2f}; "
          f"pixelwise / numpy.bincount <= 1.5 -> {ours / times['numpy.bincount']:.2f}")


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pred, target = make_labels((args.batch, args.height, args.width), args.classes, args.seed)
    pred_np, target_np = pred.numpy(), target.numpy()
    pred_u8, target_u8 = pred.to(torch.uint8), target.to(torch.uint8)
    contenders = {
        "pixelwise ConfusionMatrix": lambda: run_pixelwise(pred, target, args.classes),
        "pixelwise, uint8 inputs": lambda: run_pixelwise(pred_u8, target_u8, args.classes),
        "torchmetrics JaccardIndex": lambda: run_torchmetrics(pred, target, args.classes),
        "numpy.bincount": lambda: run_numpy(pred_np, target_np, args.classes),
    }
    check_agreement({name: function() for name, function in contenders.items()})
    print_table(median_ms(contenders, args.repeats), args)


if __name__ == "__main__":
    main()
