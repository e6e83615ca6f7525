"""Gridding artefacts of stacked dilated convolutions and their fixes, measured.

Every stack is a chain of 3x3 convolutions (``C`` channels in and out, ReLU between layers, none
after the last), built with ``pixelwise.layers.dilated.make_dilated_conv``: ``plain`` dilated
convs, the same with an ordinary 3x3 conv before the first one (``pre_conv``), every dilated conv
smoothed by Wang & Ji's shared separable filter (``smoothed``), hybrid rates (Wang et al. 2018)
and Yu & Koltun's context module (rates 1, 1, 2, 4, 8, 16, 1; its final 1x1 layer does not
change the field and is left out).

Three tables:

1. **Structure** (exact, no randomness): ``influence_map`` of the stack, i.e. path counts with
   every tap set to 1: the extent of the receptive field, the pixels of it that can influence the
   centre output, ``gridding_score`` (the share that cannot), the phases ``(dy % p, dx % p)`` that
   hold any such pixel, ``periodicity_score`` (0 when every phase mod ``p`` carries the same mean
   influence, ``1 - 1/p**2`` when one phase carries all of it) and the relative density of phase
   ``(0, 0)`` (1 for an even field, ``p**2`` when all influence sits on the grid of period ``p``).
2. **Effective receptive field** of the same stacks with PyTorch's default random initialisation
   (``--seeds`` seeds, float32, ``N = 4`` inputs drawn from N(0, 1)): ``effective_receptive_field``
   (Luo et al. 2016), its gridding score (share of pixels of its extent with an exactly zero
   gradient), in how many seeds its zero pattern equals the structural holes, its periodicity
   score and the relative density of phase ``(0, 0)``. The smoothed stacks start as the plain
   ones (the shared filter is initialised to the identity); one extra row adds N(0, 0.1^2) noise
   to every shared filter, a filter that has moved away from the identity.
3. **Cost** of one layer at ``--cost-channels`` channels: parameters (counted on the built
   modules) and multiply-adds per output pixel.

The figure (``--figure``) shows, for each stack, the structural influence map (top rows; path
counts, log colour scale) and the effective receptive field of seed 0 (bottom rows; ``|grad|``,
log colour scale over 4 decades); pixels with exactly zero influence are black.

Nothing is timed; ``--threads`` (default 1) only keeps OpenMP's spin-waiting from slowing the many
small convolutions down on a shared CPU.

    python benchmarks/gridding.py [--seeds 10] [--channels 8] [--cost-channels 256] [--threads 1]
                                  [--figure docs/gridding.png]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import Tensor, nn

from pixelwise.layers.dilated import (
    SharedSeparableConv2d,
    effective_receptive_field,
    gridding_stats,
    influence_map,
    make_dilated_conv,
    periodicity_score,
    phase_occupancy,
    receptive_field_mask,
)

BATCH = 4  # inputs per effective receptive field
MARGIN = 2  # input pixels around the receptive field


@dataclass(frozen=True)
class Case:
    """One stack: its rates, the fix, the period ``p`` of the phase columns, and whether to perturb SS filters."""

    label: str
    rates: tuple[int, ...]
    fix: str = "plain"  # plain | pre_conv (3x3 conv before the first layer) | smoothed (every layer)
    period: int = 2
    perturb: bool = False


CASES = [
    Case("one layer", (2,)),
    Case("rate 2 x3", (2, 2, 2)),
    Case("rate 4 x3", (4, 4, 4), period=4),
    Case("rate 8 x3", (8, 8, 8), period=8),
    Case("rates 2,4,8", (2, 4, 8)),
    Case("3x3 conv + rate 2 x3", (2, 2, 2), "pre_conv"),
    Case("3x3 conv + rate 4 x3", (4, 4, 4), "pre_conv", period=4),
    Case("3x3 conv + rate 8 x3", (8, 8, 8), "pre_conv", period=8),
    Case("smoothed rate 2 x3", (2, 2, 2), "smoothed"),
    Case("smoothed rate 4 x3", (4, 4, 4), "smoothed", period=4),
    Case("smoothed rate 8 x3", (8, 8, 8), "smoothed", period=8),
    Case("smoothed rate 2 x3, SS noise", (2, 2, 2), "smoothed", perturb=True),
    Case("HDC 1,2,5", (1, 2, 5), period=5),
    Case("HDC 1,2,3", (1, 2, 3), period=3),
    Case("rates 1,2,9 (fails HDC)", (1, 2, 9), period=9),
    Case("Yu & Koltun context", (1, 1, 2, 4, 8, 16, 1), period=16),
]
STRUCTURE_CASES = [case for case in CASES if not case.perturb]  # the noise changes weights, not the structure


def build(case: Case, channels: int) -> nn.Sequential:
    """The stack of ``case``: ``C -> C`` 3x3 layers with ReLU between them."""
    layers: list[nn.Module] = []
    for index, rate in enumerate(case.rates):
        first = index == 0
        kind = "smoothed" if case.fix == "smoothed" else "pre_conv" if case.fix == "pre_conv" and first else "plain"
        if not first:
            layers.append(nn.ReLU())
        layers.append(make_dilated_conv(kind, channels, channels, rate))
    return nn.Sequential(*layers)


def describe(case: Case) -> str:
    rates = ",".join(map(str, case.rates))
    fix = {"plain": "", "pre_conv": "3x3 conv + ", "smoothed": "SS + "}[case.fix]
    return f"{fix}({rates})" if case.fix != "smoothed" else f"SS before each of ({rates})"


def grid_density(field: Tensor, period: int) -> float:
    """Relative density of phase (0, 0) mod ``p``: 1 for an even field, ``p**2`` when it holds all the influence."""
    return float(phase_occupancy(field, period, weighted=True)[0, 0])


def erf(case: Case, seed: int, channels: int) -> Tensor:
    """Effective receptive field of ``case``'s stack built with ``seed`` (PyTorch's default init)."""
    torch.manual_seed(seed)
    stack = build(case, channels).eval()
    if case.perturb:
        with torch.no_grad():
            for module in stack.modules():
                if isinstance(module, SharedSeparableConv2d):
                    module.weight.normal_(0, 0.1)
    side = influence_map(stack).shape[-1] + 2 * MARGIN
    return effective_receptive_field(stack, torch.randn(BATCH, channels, side, side))


def structural_holes(case: Case, channels: int) -> Tensor:
    """The structural zero pattern on the ERF's input grid (the field padded by the margin)."""
    mask = receptive_field_mask(build(case, channels))
    return ~torch.nn.functional.pad(mask, (MARGIN,) * 4)


def macs_per_pixel(module: nn.Module, channels: int) -> int:
    """Multiply-adds per output pixel: ``k_h k_w C_in C_out / groups`` per conv, ``k**2 C`` per shared filter."""
    total = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            k_h, k_w = layer.kernel_size
            total += k_h * k_w * layer.in_channels * layer.out_channels // layer.groups
        elif isinstance(layer, SharedSeparableConv2d):
            total += layer.kernel_size**2 * channels
    return total


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def structure_table() -> None:
    print("| stack | layers | extent | used / total | gridding score | p | phases hit mod p | periodicity "
          "| density (0,0) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in STRUCTURE_CASES:
        stack = build(case, 1)
        counts = influence_map(stack)
        stats = gridding_stats(counts)
        hit = int((phase_occupancy(counts, case.period) > 0).sum())
        print(
            f"| {case.label} | {describe(case)} | {stats.extent[0]} x {stats.extent[1]} | {stats.used} / {stats.total} "
            f"| {stats.score:.4g} | {case.period} | {hit} / {case.period**2} "
            f"| {periodicity_score(counts, case.period):.3g} | {grid_density(counts, case.period):.3g} |"
        )


def erf_table(args: argparse.Namespace) -> None:
    print("| stack | ERF gridding score, mean | max | zeros = structural holes | periodicity, mean | min | max "
          "| density (0,0), mean |")
    print("|---|---|---|---|---|---|---|---|")
    for case in CASES:
        holes = structural_holes(case, args.channels)
        scores, periodicity, density, agree = [], [], [], 0
        for seed in range(args.seeds):
            field = erf(case, seed, args.channels)
            scores.append(gridding_stats(field).score)
            periodicity.append(periodicity_score(field, case.period))
            density.append(grid_density(field, case.period))
            agree += int(torch.equal(field == 0, holes))
        print(
            f"| {case.label} | {statistics.fmean(scores):.4g} | {max(scores):.4g} | {agree} / {args.seeds} "
            f"| {statistics.fmean(periodicity):.3g} | {min(periodicity):.3g} | {max(periodicity):.3g} "
            f"| {statistics.fmean(density):.3g} |"
        )


def cost_table(channels: int) -> None:
    print("| rate | plain params | + 3x3 conv before | + SS filter | plain MACs / pixel | + 3x3 conv before "
          "| + SS filter |")
    print("|---|---|---|---|---|---|---|")
    for rate in (2, 4, 8, 16):
        layers = {kind: make_dilated_conv(kind, channels, channels, rate) for kind in ("plain", "pre_conv", "smoothed")}
        params = {kind: count(layer) for kind, layer in layers.items()}
        macs = {kind: macs_per_pixel(layer, channels) for kind, layer in layers.items()}
        extra = {kind: (params[kind] - params["plain"], macs[kind] - macs["plain"]) for kind in layers}
        print(
            f"| {rate} | {params['plain']:,} | +{extra['pre_conv'][0]:,} | +{extra['smoothed'][0]:,} "
            f"| {macs['plain']:,} | +{extra['pre_conv'][1]:,} ({extra['pre_conv'][1] / macs['plain']:.0%}) "
            f"| +{extra['smoothed'][1]:,} ({extra['smoothed'][1] / macs['plain']:.1%}) |"
        )


def draw_figure(path: Path, args: argparse.Namespace) -> None:
    """Structural influence (top half) and seed-0 ERF (bottom half) of every case; zero influence in black."""
    columns = 8
    rows_per_half = -(-len(CASES) // columns)
    figure = Figure(figsize=(2.0 * columns, 2.35 * 2 * rows_per_half), dpi=60, layout="constrained")
    cmap = colormaps["viridis"].with_extremes(bad="black")
    for index, case in enumerate(CASES):
        counts = influence_map(build(case, 1)).double().numpy()
        field = erf(case, 0, args.channels)[MARGIN:-MARGIN, MARGIN:-MARGIN].numpy()
        panels = (
            (counts, LogNorm(vmin=1, vmax=max(counts.max(), 2)), "paths"),
            (field, LogNorm(vmin=field.max() * 1e-4, vmax=field.max()), "ERF"),
        )
        for half, (image, norm, kind) in enumerate(panels):
            score = gridding_stats(torch.from_numpy(image)).score
            axes = figure.add_subplot(2 * rows_per_half, columns, half * rows_per_half * columns + index + 1)
            axes.imshow(np.ma.masked_equal(image, 0), cmap=cmap, norm=norm, interpolation="nearest")
            axes.set_title(f"{case.label}\n{kind}: holes {score:.3f}", fontsize=9)
            axes.set_axis_off()
    figure.suptitle(
        f"Top: influence map (paths from each input pixel to the centre output, log scale). Bottom: effective "
        f"receptive field |grad|, seed 0, C = {args.channels}, default init (log scale, 4 decades). "
        "Black: exactly zero influence.",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="random initialisations per stack for the ERF")
    parser.add_argument("--channels", type=int, default=8, help="channels of the stacks whose ERF is measured")
    parser.add_argument("--cost-channels", type=int, default=256, help="channels for the cost table")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--figure", type=Path, default=Path("docs/gridding.png"), help="PNG to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("structure: 3x3 convs, every tap 1 (exact)\n")
    structure_table()
    print(f"\neffective receptive field: C = {args.channels}, default init, ReLU between layers, {BATCH} inputs "
          f"N(0, 1), float32, {args.seeds} seeds\n")
    erf_table(args)
    print(f"\ncost of one 3x3 layer, {args.cost_channels} -> {args.cost_channels} channels, with bias\n")
    cost_table(args.cost_channels)
    draw_figure(args.figure, args)
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
