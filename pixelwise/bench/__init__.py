"""``pixelwise bench``: parameters, MACs and FLOPs, latency, FPS and peak memory of registered models,
and the survey's speed/quality table measured beside the reported numbers.

>>> row = benchmark_model("fcn8s_tiny", size=(32, 32), num_classes=3, warmup=1, runs=3)
>>> row["input_size"], row["macs"] * 2 == row["flops"], row["backend"], row["runs"]
('32x32', True, 'eager', 3)
"""

from pixelwise.bench.measure import BACKENDS, count_flops, model_flops
from pixelwise.bench.report import paper_rows, paper_table_markdown, plot_results, results_markdown
from pixelwise.bench.runner import benchmark_model

__all__ = ["BACKENDS", "benchmark_model", "count_flops", "model_flops", "paper_rows", "paper_table_markdown",
           "plot_results", "results_markdown"]
