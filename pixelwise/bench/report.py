"""Tables and the plot of ``pixelwise bench``: measured rows, the survey's table beside them.

The reported numbers (the paper's FPS, hardware, FLOPs, mIoU) come from each model's ``speed``
metadata (:func:`pixelwise.metadata.survey_speed`); nothing here types a paper's figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pixelwise.files import atomic_write
from pixelwise.metadata import SURVEY
from pixelwise.models import list_models, model_info

__all__ = ["conditions_line", "paper_rows", "paper_table_markdown", "plot_results", "results_markdown"]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def conditions_line(rows: Sequence[dict[str, Any]]) -> str:
    """One line naming the conditions shared by ``rows`` (torch, device, precision, threads, runs)."""
    if not rows:
        return ""
    keys = ("torch", "device", "precision", "threads", "batch", "warmup", "runs")
    values = {key: sorted({str(row[key]) for row in rows if key in row}) for key in keys}
    text = ", ".join(f"{key} {'/'.join(value)}" for key, value in values.items() if value)
    return f"Measured with {text} (median and 90th percentile of the runs after the warm-ups)."


def results_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`~pixelwise.bench.benchmark_model` rows (failed rows show their error)."""
    lines = ["| Model | Input | Params | GMACs | GFLOPs | Median ms | p90 ms | FPS | Peak MiB | Backend |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| `{row['name']}` | {row.get('input_size', '')} | failed: {row['error']} ||||||| "
                         f"{row.get('backend', '')} |")
            continue
        lines.append(f"| `{row['name']}` | {row['input_size']} | {row['params']:,} | {row['macs'] / 1e9:.2f} | "
                     f"{row['flops'] / 1e9:.2f} | {_fmt(row['latency_ms_median'])} | {_fmt(row['latency_ms_p90'])} | "
                     f"{_fmt(row['fps'], 2)} | {_fmt(row['peak_memory_mb'], 0)} | {row['backend']} |")
    return "\n".join([*lines, "", conditions_line([row for row in rows if "error" not in row])])


def paper_rows(models: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``(model, speed entry)`` for every row of the survey's table, in the table's order."""
    names = list_models() if models is None else list(models)
    rows = [(name, entry) for name in names for entry in model_info(name)["speed"] if entry["source"] == SURVEY]
    return sorted(rows, key=lambda pair: pair[1].get("order", 0))


def _reported_flops(entry: dict[str, Any], measured: dict[str, Any] | None) -> str:
    if "gflops" not in entry:
        return "—"
    text = f"{entry['gflops']:g}G ({entry['flops_kind']})"
    if measured and "macs" in measured and measured["macs"]:
        text += f", {entry['gflops'] * 1e9 / measured['macs']:.2f}x our MACs"
    return text


def paper_table_markdown(pairs: Sequence[tuple[str, dict[str, Any]]],
                         measured: dict[str, dict[str, Any]]) -> str:
    """The survey's rows, reported beside measured: ``measured`` maps a model name to its bench row."""
    lines = ["| Survey row | Model | Input | Params reported / ours | GFLOPs reported | Ours GMACs / GFLOPs | "
             "Reported ms / FPS (hardware) | Ours ms / FPS | Reported mIoU |",
             "|---|---|---|---|---|---|---|---|---:|"]
    for name, entry in pairs:
        row = measured.get(name) or {}
        ours_params = f"{row['params'] / 1e6:.2f}M" if "params" in row else "—"
        reported_params = f"{entry['params_m']:g}M" if "params_m" in entry else "—"
        ours_cost = f"{row['macs'] / 1e9:.1f} / {row['flops'] / 1e9:.1f}" if "macs" in row else "—"
        ours_speed = (f"{_fmt(row['latency_ms_median'])} / {_fmt(row['fps'], 2)}" if "fps" in row
                      else f"failed: {row.get('error', 'not measured')}")
        reported_speed = f"{_fmt(entry.get('time_ms'), 0)} / {entry['fps']:g} ({entry.get('hardware', '?')})"
        lines.append(f"| {entry.get('row', name)} | `{name}` | {entry['input_size']} | {reported_params} / "
                     f"{ours_params} | {_reported_flops(entry, row)} | {ours_cost} | {reported_speed} | "
                     f"{ours_speed} | {_fmt(entry.get('miou'))} |")
    done = [row for row in measured.values() if "error" not in row]
    return "\n".join([*lines, "", conditions_line(done)])


def plot_results(pairs: Sequence[tuple[str, dict[str, Any]]], measured: dict[str, dict[str, Any]],
                 path: str | Path) -> Path:
    """Measured latency (log scale) against reported mIoU; bubble area proportional to parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(measured[name], entry) for name, entry in pairs
              if name in measured and "fps" in measured[name] and "miou" in entry]
    figure, axes = plt.subplots(figsize=(8, 5.5))
    for row, entry in points:
        axes.scatter(row["latency_ms_median"], entry["miou"], s=max(20.0, row["params"] / 1e5), alpha=0.5)
        axes.annotate(row["name"], (row["latency_ms_median"], entry["miou"]), fontsize=8,
                      xytext=(4, 4), textcoords="offset points")
    axes.set_xscale("log")
    axes.set_xlabel("latency on this machine, ms (median, batch 1, log scale)")
    axes.set_ylabel("reported Cityscapes mIoU, %")
    conditions = points[0][0] if points else {}
    axes.set_title(f"bubble area ~ parameters; {conditions.get('device', '')}, "
                   f"{conditions.get('threads', '?')} threads, {conditions.get('backend', '')}", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    try:
        return atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=110, bbox_inches="tight"),
                            "plot")
    finally:
        plt.close(figure)
