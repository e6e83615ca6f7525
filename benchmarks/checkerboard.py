"""Checkerboard artefacts of upsampling layers (Odena, Dumoulin & Olah 2016), measured.

Each upsampler (``C`` channels in and out) is fed a constant input (all ones,
``1 x C x size x size``) and scored with ``pixelwise.layers.upsampling.checkerboard_score`` on
the interior of its output (``--border`` pixels dropped on every side, so that zero padding at
the image edge does not count): 0 means every phase ``(y % s, x % s)`` has the same mean, i.e.
no periodic pattern. Layers with random weights are scored for ``--inits`` seeds (mean,
standard deviation, maximum). Initialisations:

- ``default``: PyTorch's own (Kaiming-uniform weights, signed; uniform bias);
- ``U(0,1)``: weights uniform in [0, 1], zero bias: a positive random kernel, whose *expected*
  phase sums differ only through the overlap count;
- ``ones``: all weights 1, zero bias: the overlap count alone;
- ``bilinear``: FCN's bilinear kernel; ``ICNR``: Aitken et al. 2017.

The figure (``--figure``) shows channel 0 of each layer's output interior for seed 0, side by
side, divided by its root mean square and drawn on one colour scale (-2 blue, 0 white, 2 red),
so that a flat output is one colour and the strength of a pattern can be compared by eye.

    python benchmarks/checkerboard.py [--inits 20] [--channels 8] [--size 12] [--border 4] [--figure docs/checkerboard.png]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from pixelwise.layers.upsampling import (
    PixelShuffleUpsample,
    ResizeConv2d,
    checkerboard_score,
    make_upsampler,
    transposed_conv,
)

WEIGHT_FILLS: dict[str, Callable[[Tensor], Tensor]] = {"ones": nn.init.ones_, "U(0,1)": nn.init.uniform_}


@dataclass(frozen=True)
class Case:
    """One row of the table: a layer builder ``channels -> module`` (called after seeding)."""

    method: str
    init: str
    kernel: int | None
    stride: int
    build: Callable[[int], nn.Module]
    random: bool = True  # False: the layer is the same for every seed, score it once


def build_transposed(channels: int, *, kernel: int, stride: int, init: str) -> nn.Module:
    layer = transposed_conv(channels, channels, stride, kernel)
    if init in WEIGHT_FILLS:
        WEIGHT_FILLS[init](layer.weight)
        nn.init.zeros_(layer.bias)
    return layer


def transposed_case(kernel: int, stride: int, init: str) -> Case:
    build = partial(build_transposed, kernel=kernel, stride=stride, init=init)
    return Case("transposed conv", init, kernel, stride, build, random=init != "ones")


def factory_case(kind: str, init: str, kernel: int | None, random: bool = True) -> Case:
    return Case(kind, init, kernel, 2, lambda channels: make_upsampler(kind, channels, channels, 2), random)


CASES = [
    *(transposed_case(kernel, 2, init) for kernel in (3, 4) for init in ("ones", "U(0,1)", "default")),
    transposed_case(2, 2, "default"),
    transposed_case(5, 3, "ones"),
    transposed_case(6, 3, "ones"),
    factory_case("transpose_bilinear", "bilinear", 4, random=False),
    factory_case("resize_conv", "default", 3),
    Case("resize_conv (bilinear)", "default", 3, 2, lambda channels: ResizeConv2d(channels, channels, mode="bilinear")),
    Case("pixel_shuffle", "default", 3, 2, lambda channels: PixelShuffleUpsample(channels, channels, icnr=False)),
    factory_case("pixel_shuffle", "ICNR", 3),
    factory_case("nearest", "-", None, random=False),
    factory_case("bilinear", "-", None, random=False),
    factory_case("bed_of_nails", "-", None, random=False),
]


def constant_response(case: Case, seed: int, channels: int, size: int) -> Tensor:
    """The output of ``case``'s layer, built with ``seed``, on a constant all-ones input."""
    torch.manual_seed(seed)
    layer = case.build(channels).eval()
    with torch.no_grad():
        return layer(torch.ones(1, channels, size, size))


def scores(case: Case, args: argparse.Namespace) -> list[float]:
    seeds = range(args.inits if case.random else 1)
    return [
        checkerboard_score(constant_response(case, seed, args.channels, args.size), case.stride, border=args.border)
        for seed in seeds
    ]


def table_row(case: Case, values: list[float]) -> str:
    spread = statistics.pstdev(values)
    kernel = "-" if case.kernel is None else str(case.kernel)
    return (
        f"| {case.method} | {case.init} | {kernel} | {case.stride} | {len(values)} "
        f"| {statistics.fmean(values):.4g} | {spread:.2g} | {max(values):.4g} |"
    )


def draw_figure(path: Path, args: argparse.Namespace) -> None:
    """One panel per case: channel 0 of the output interior over its root mean square, on one colour scale."""
    columns = 6
    rows = -(-len(CASES) // columns)
    figure = Figure(figsize=(2.1 * columns, 2.5 * rows), dpi=60, layout="constrained")
    for index, case in enumerate(CASES):
        output = constant_response(case, 0, args.channels, args.size)[:, :1]
        side = output.shape[-1]
        interior = output[0, 0, args.border : side - args.border, args.border : side - args.border]
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(interior / interior.square().mean().sqrt(), cmap="RdBu_r", vmin=-2, vmax=2, interpolation="nearest")
        score = checkerboard_score(output, case.stride, border=args.border)
        kernel = "" if case.kernel is None else f" k={case.kernel}"
        axes.set_title(f"{case.method}\n{case.init}{kernel} s={case.stride}: {score:.3f}", fontsize=9)
        axes.set_axis_off()
    figure.suptitle(
        "Output on a constant input (interior, channel 0, seed 0) / its RMS, colour scale -2 (blue) .. 2 (red); "
        "title: its checkerboard score",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", type=int, default=20, help="random initialisations per layer")
    parser.add_argument("--channels", type=int, default=8, help="input and output channels")
    parser.add_argument("--size", type=int, default=12, help="side of the constant input")
    parser.add_argument("--border", type=int, default=4, help="output pixels dropped on every side")
    parser.add_argument("--figure", type=Path, default=Path("docs/checkerboard.png"), help="PNG to write")
    args = parser.parse_args()
    print(f"constant input 1 x {args.channels} x {args.size} x {args.size}; score of the output "
          f"interior (border {args.border}); {args.inits} random initialisations per random layer\n")
    print("| method | init | kernel | stride | inits | mean score | std | max |")
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        print(table_row(case, scores(case, args)))
    draw_figure(args.figure, args)
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
