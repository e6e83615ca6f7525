"""The survey's speed/quality table measured on this machine: what README's "Speed" section shows.

Every row of the table (the models whose ``speed`` metadata holds a ``survey_speed`` entry) is
measured as ``pixelwise bench --paper-table`` measures it — at the paper's input size, batch 1,
19 classes, eager float32 — with one difference that keeps the run to minutes on a 2-core CPU: the
networks above ``--heavy-gmacs`` multiply-adds (the VGG and ResNet-101 networks of several hundred
GMACs, 10-30 s a pass here) get ``--heavy-runs`` timed passes after one warm-up, the others the
bench defaults (50 after 5). Each row records its runs. Writes ``docs/speed_table.md``, the
rows as JSON (``docs/speed_table.json``) and the plot (``docs/speed.png``).

    python benchmarks/paper_table.py [--threads 2] [--heavy-gmacs 100] [--heavy-runs 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from pixelwise.bench import benchmark_model, model_flops, paper_rows, paper_table_markdown, plot_results
from pixelwise.errors import one_line

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 19


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heavy-gmacs", type=float, default=100.0)
    parser.add_argument("--heavy-runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    pairs = paper_rows()
    measured = {}
    for name, entry in tqdm(pairs, unit="model"):
        size = tuple(int(side) for side in entry["input_size"].split("x"))
        heavy = model_flops(name, NUM_CLASSES, size) / 2e9 > args.heavy_gmacs
        runs, warmup = (args.heavy_runs, 1) if heavy else (50, 5)
        try:
            measured[name] = benchmark_model(name, size=size, threads=args.threads, num_classes=NUM_CLASSES,
                                             runs=runs, warmup=warmup)
        except (RuntimeError, ValueError, MemoryError) as error:
            measured[name] = {"name": name, "input_size": entry["input_size"], "error": one_line(error)}
        tqdm.write(json.dumps(measured[name]))
    table = paper_table_markdown(pairs, measured)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_table.md").write_text(table + "\n")
    (args.out / "speed_table.json").write_text(json.dumps(list(measured.values()), indent=2) + "\n")
    plot_results(pairs, measured, args.out / "speed.png")
    print(f"torch {torch.__version__}; wrote {args.out / 'speed_table.md'}, speed_table.json, speed.png")


if __name__ == "__main__":
    main()
