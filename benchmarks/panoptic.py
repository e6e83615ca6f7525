"""Time ``PanopticQuality.update`` + ``compute`` against torchmetrics' measured in the same run.

Reference: ``torchmetrics.detection.PanopticQuality(things, stuffs, return_sq_and_rq=True,
return_per_class=True)``. Inputs: a random batch of ``--batch`` images ``--height x --width``,
each with stuff blocks under about ``--things`` thing rectangles (about 40 segments in all) and a
few void rectangles in the ground truth; the prediction jitters the rectangles, drops and relabels
some and adds a few. No crowd and no void in the prediction, so that both implement the same
rules (with them, torchmetrics departs from COCO; see ``pixelwise/metrics/panoptic.py``). The
per-class PQ, SQ and RQ of the two are first checked to agree (this is also the warm-up); each
timing is then the median of ``--repeats`` runs, taken round-robin so that load on the machine
hits both alike (torchmetrics takes tens of seconds a run on CPU, hence few repeats). Both run
with ``--threads`` torch threads (default 2). On a CPU shared with other processes, set
``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's default spin-waiting, each parallel region can wait a
whole scheduler slice for a descheduled thread.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/panoptic.py [--repeats 3] [--threads 2] [--batch 8]
        [--height 512] [--width 1024] [--things 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchmetrics.detection import PanopticQuality as TorchmetricsPanopticQuality

from pixelwise.metrics import PanopticQuality

THINGS = tuple(range(1, 81))  # COCO-like: 80 things, 53 stuff
STUFFS = tuple(range(92, 145))
UNKNOWN = 255  # a ground-truth category that is neither: void


def make_batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(pred, target)`` int64 ``(batch, H, W, 2)`` pairs."""
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch, args.height, args.width, 2)
    target, pred = torch.zeros(shape, dtype=torch.int64), torch.zeros(shape, dtype=torch.int64)
    for image in range(args.batch):
        paint_image(target[image], pred[image], args.things, generator)
    return pred, target


def paint_image(target: torch.Tensor, pred: torch.Tensor, things: int, generator: torch.Generator) -> None:
    height, width = target.shape[:2]

    def integer(low: int, high: int) -> int:
        return int(torch.randint(low, high, (), generator=generator))

    def choice(options: tuple[int, ...]) -> int:
        return options[integer(0, len(options))]

    # Stuff: a 3 x 3 grid of blocks (at most 9 stuff segments), boundaries jittered in the prediction.
    rows = sorted(integer(1, height) for _ in range(2))
    columns = sorted(integer(1, width) for _ in range(2))
    blocks = [[choice(STUFFS) for _ in range(3)] for _ in range(3)]
    for side, jitter in ((target, 0), (pred, height // 40)):
        row_edges = [0, *(min(max(r + integer(-jitter, jitter + 1), 0), height) for r in rows), height]
        column_edges = [0, *(min(max(c + integer(-jitter, jitter + 1), 0), width) for c in columns), width]
        for i in range(3):
            for j in range(3):
                side[row_edges[i]:row_edges[i + 1], column_edges[j]:column_edges[j + 1]] = \
                    torch.tensor([blocks[i][j], 0])
    for instance in range(1, things + 1):
        box = random_box(height, width, integer)
        category = choice(THINGS)
        paint(target, box, category, instance)
        if integer(0, 10) < 8:  # 80% predicted, some with another category, all jittered
            paint(pred, jitter_box(box, height, width, integer), category if integer(0, 10) < 9 else choice(THINGS),
                  integer(0, 1000))
    for _ in range(3):  # spurious predictions and void ground truth
        paint(pred, random_box(height, width, integer), choice(THINGS), integer(0, 1000))
        paint(target, random_box(height, width, integer), UNKNOWN, 0)


def random_box(height: int, width: int, integer: Callable[[int, int], int]) -> tuple[int, int, int, int]:
    box_height, box_width = integer(height // 20, height // 4), integer(width // 20, width // 4)
    top, left = integer(0, height - box_height), integer(0, width - box_width)
    return top, left, top + box_height, left + box_width


def jitter_box(box: tuple[int, int, int, int], height: int, width: int,
               integer: Callable[[int, int], int]) -> tuple[int, int, int, int]:
    top, left, bottom, right = box
    shift = max((bottom - top) // 6, 1)
    top, left = max(top + integer(-shift, shift + 1), 0), max(left + integer(-shift, shift + 1), 0)
    bottom = min(max(bottom + integer(-shift, shift + 1), top + 1), height)
    right = min(max(right + integer(-shift, shift + 1), left + 1), width)
    return top, left, bottom, right


def paint(side: torch.Tensor, box: tuple[int, int, int, int], category: int, instance: int) -> None:
    top, left, bottom, right = box
    side[top:bottom, left:right, 0] = category
    side[top:bottom, left:right, 1] = instance


def run_pixelwise(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class ``(pq, sq, rq)`` in torchmetrics' order (things, then stuff), 0 for absent classes."""
    metric = PanopticQuality(THINGS, STUFFS)
    metric.update(pred, target)
    per_class = metric.compute()["per_class"]
    order = sorted(THINGS) + sorted(STUFFS)
    return torch.tensor([[per_class[c][key] for key in ("pq", "sq", "rq")] for c in order]).nan_to_num(0.0)


def run_torchmetrics(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    metric = TorchmetricsPanopticQuality(set(THINGS), set(STUFFS), return_sq_and_rq=True, return_per_class=True)
    metric = metric.to(pred.device)
    metric.update(pred, target)
    return metric.compute().reshape(-1, 3).cpu()


def median_ms(contenders: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall time of each contender; the repeats go round-robin so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, function in contenders.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            function()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def count_segments(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Mean number of predicted and ground-truth segments per image (stuff instances ignored)."""
    def segments(side: torch.Tensor) -> float:
        category, instance = side[..., 0], torch.where(torch.isin(side[..., 0], torch.tensor(STUFFS)), 0, side[..., 1])
        keys = category.flatten(1) * 4096 + instance.flatten(1)
        return sum(len(torch.unique(k)) for k in keys) / len(keys)
    return segments(pred), segments(target)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--things", type=int, default=30, help="thing rectangles per ground-truth image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    pred, target = make_batch(args)
    pred_segments, target_segments = count_segments(pred, target)
    pred, target = pred.to(device), target.to(device)
    contenders = {
        "pixelwise PanopticQuality": lambda: run_pixelwise(pred, target),
        "torchmetrics PanopticQuality": lambda: run_torchmetrics(pred, target),
    }
    ours, theirs = (function() for function in contenders.values())
    difference = (ours - theirs).abs().max().item()
    if difference > 1e-6:
        raise AssertionError(f"per-class PQ/SQ/RQ differ from torchmetrics by up to {difference}")
    times = median_ms(contenders, args.repeats, device)
    print(f"{args.batch}x{args.height}x{args.width}, {len(THINGS)} things + {len(STUFFS)} stuff categories, "
          f"{target_segments:.1f} ground-truth and {pred_segments:.1f} predicted segments per image, int64 pairs; "
          f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads; median of {args.repeats}")
    print(f"per-class PQ, SQ, RQ agree with torchmetrics: max |difference| = {difference:.1e}")
    print(f"{'implementation':<30} {'ms':>10}")
    for name, milliseconds in times.items():
        print(f"{name:<30} {milliseconds:>10.1f}")
    ratio = times["pixelwise PanopticQuality"] / times["torchmetrics PanopticQuality"]
    print(f"pixelwise / torchmetrics = {ratio:.4f} ({1 / ratio:.0f}x faster)")


if __name__ == "__main__":
    main()
