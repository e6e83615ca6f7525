"""pixelwise/bench and `pixelwise bench`: counts by hand, timing protocol, memory, the tables and the CLI."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from pixelwise.bench import BACKENDS, benchmark_model, count_flops, model_flops, paper_rows, paper_table_markdown
from pixelwise.bench.measure import peak_memory, percentile, time_runs
from pixelwise.cli import bench as bench_cli
from pixelwise.cli.main import main
from pixelwise.metadata import SURVEY
from pixelwise.models import list_models, model_info, parameter_count

JSON_KEYS = {"name", "input_size", "params", "macs", "flops", "latency_ms_median", "latency_ms_p90", "fps",
             "peak_memory_mb", "backend", "precision", "threads", "torch", "device"}


def test_flops_are_two_per_multiply_add_of_convolutions_and_matrix_products():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 25, 10))
    # conv: 4 x 3 x 3 x 3 multiply-adds at each of 5 x 5 positions; linear: 100 x 10
    assert count_flops(model, torch.zeros(1, 3, 5, 5)) == 2 * (4 * 27 * 25 + 100 * 10)


def test_model_flops_on_the_meta_device_equal_a_real_forward():
    from pixelwise.models import create_model

    model = create_model("fcn8s_tiny", 3).eval()
    assert model_flops("fcn8s_tiny", 3, (40, 56)) == count_flops(model, torch.zeros(1, 3, 40, 56))
    assert model_flops("fcn8s_tiny", 3, (40, 56), batch=2) == 2 * model_flops("fcn8s_tiny", 3, (40, 56))


def test_percentiles_interpolate_between_order_statistics():
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 5.5 and percentile(values, 90) == pytest.approx(9.1)


def test_warmup_runs_are_not_timed():
    calls = []
    times = time_runs(lambda: calls.append(1), warmup=3, runs=4)
    assert len(calls) == 7 and len(times) == 4 and all(t >= 0 for t in times)


def test_peak_memory_sees_a_transient_allocation_but_not_memory_freed_before():
    before = torch.ones(40 * 2**20 // 4)  # 40 MiB in use before the block: not counted
    with peak_memory(torch.device("cpu")) as memory:
        transient = torch.ones(120 * 2**20 // 4)  # 120 MiB, touched, then freed inside the block
        del transient
    if memory.mb is None:
        pytest.skip("this kernel cannot reset the peak resident memory (/proc/self/clear_refs)")
    assert 110 <= memory.mb <= 200
    del before


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_row_has_every_documented_key_for_every_backend(backend):
    row = benchmark_model("fcn8s_tiny", size=(32, 48), num_classes=3, warmup=1, runs=3, threads=1, backend=backend)
    assert JSON_KEYS <= set(row) and row["backend"] == backend and row["threads"] == 1
    assert row["input_size"] == "32x48" and row["macs"] * 2 == row["flops"]
    assert row["params"] == parameter_count("fcn8s_tiny", 3) and row["flops"] == model_flops("fcn8s_tiny", 3, (32, 48))
    assert row["latency_ms_p90"] >= row["latency_ms_median"] > 0
    assert row["fps"] == pytest.approx(1000 / row["latency_ms_median"], rel=1e-2)
    assert row["torch"] == torch.__version__ and row["device"].startswith("cpu: ")


def test_the_threads_setting_is_restored():
    before = torch.get_num_threads()
    benchmark_model("fcn8s_tiny", size=(32, 32), num_classes=2, warmup=0, runs=1, threads=1)
    assert torch.get_num_threads() == before


def test_compile_reaches_the_optimised_model_and_only_it(monkeypatch):
    import pixelwise.engine.optimize as optimize

    seen = []
    real = optimize.optimize_for_inference
    monkeypatch.setattr(optimize, "optimize_for_inference",
                        lambda model, **kwargs: seen.append(kwargs["compile"]) or real(model, **{**kwargs, "compile": False}))
    row = benchmark_model("fcn8s_tiny", size=(32, 32), num_classes=2, warmup=0, runs=1, backend="optimised",
                          compile=True)
    assert seen == [True] and row["compiled"] is True
    with pytest.raises(ValueError, match="compile applies to the optimised backend"):
        benchmark_model("fcn8s_tiny", size=(32, 32), num_classes=2, warmup=0, runs=1, compile=True)


def test_bad_arguments_are_refused_naming_them():
    with pytest.raises(ValueError, match="backend must be one of eager, optimised, onnxruntime, got 'tensorrt'"):
        benchmark_model("fcn8s_tiny", size=(32, 32), backend="tensorrt")
    with pytest.raises(ValueError, match="runs=0"):
        benchmark_model("fcn8s_tiny", size=(32, 32), runs=0)


def test_the_cli_backends_are_the_librarys():
    assert bench_cli.BACKENDS == BACKENDS


def test_paper_rows_come_from_the_metadata_in_the_tables_order():
    rows = paper_rows()
    orders = [entry["order"] for _, entry in rows]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    expected = {name for name in list_models() if any(e["source"] == SURVEY for e in model_info(name)["speed"])}
    assert {name for name, _ in rows} == expected >= {"enet", "segnet", "fcn8s", "pspnet_resnet101"}


def test_the_paper_table_puts_reported_and_measured_side_by_side():
    pairs = [("enet", model_info("enet")["speed"][0])]
    measured = {"enet": {"name": "enet", "params": 364_311, "macs": 1_900_000_000, "flops": 3_800_000_000,
                         "latency_ms_median": 50.0, "fps": 20.0, "torch": "x", "device": "cpu: y"}}
    table = paper_table_markdown(pairs, measured)
    row = table.splitlines()[2]
    assert "ENet (Paszke et al., 2016)" in row and "0.4M / 0.36M" in row and "3.8G (flops), 2.00x our MACs" in row
    assert "1.9 / 3.8" in row and "7 / 135.4" in row and "50.0 / 20.00" in row and row.endswith("57.0 |")


def test_cli_writes_json_markdown_and_plot(tmp_path: Path, capsys):
    out = tmp_path / "rows.json"
    code = main(["bench", "--models", "fcn8s_tiny,enet", "--size", "32x32", "--runs", "2", "--warmup", "0",
                 "--threads", "1", "--json", str(out), "--markdown", str(tmp_path / "t.md"),
                 "--plot", str(tmp_path / "p.png"), "--no-progress"])
    assert code == 0
    rows = json.loads(out.read_text())
    assert [row["name"] for row in rows] == ["fcn8s_tiny", "enet"] and all(JSON_KEYS <= set(row) for row in rows)
    assert "| `enet` | 32x32 | 364,311 |" in (tmp_path / "t.md").read_text()
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| `fcn8s_tiny` |" in capsys.readouterr().out


def test_cli_paper_table_measures_at_the_papers_input_size(tmp_path: Path, capsys):
    out = tmp_path / "rows.json"
    code = main(["bench", "--paper-table", "--models", "enet", "--runs", "1", "--warmup", "0", "--json", str(out),
                 "--no-progress"])
    assert code == 0
    (row,) = json.loads(out.read_text())
    assert row["input_size"] == model_info("enet")["speed"][0]["input_size"] == "360x640"
    assert "ENet (Paszke et al., 2016)" in capsys.readouterr().out


def test_cli_errors_name_the_problem(capsys):
    assert main(["bench", "--size", "32"]) == 2
    assert "--models is required without --paper-table" in capsys.readouterr().err
    assert main(["bench", "--models", "enet*x"]) == 2
    assert "no registered model matches 'enet*x'" in capsys.readouterr().err
    assert main(["bench", "--paper-table", "--models", "unet"]) == 2
    assert "none of unet is a row of the survey's table" in capsys.readouterr().err


def test_a_model_that_fails_is_reported_and_the_others_still_run(tmp_path: Path, capsys, monkeypatch):
    from pixelwise.bench import runner

    real = runner.benchmark_model

    def failing(name, **kwargs):
        if name == "enet":
            raise RuntimeError("out of memory at 32x32")
        return real(name, **kwargs)

    monkeypatch.setattr("pixelwise.bench.benchmark_model", failing)
    out = tmp_path / "rows.json"
    code = main(["bench", "--models", "enet,fcn8s_tiny", "--size", "32", "--runs", "1", "--warmup", "0",
                 "--json", str(out), "--markdown", str(tmp_path / "t.md"), "--no-progress"])
    assert code == 1
    header, _, failed, measured = (tmp_path / "t.md").read_text().splitlines()[:4]
    assert header.count("|") == failed.count("|") == measured.count("|") and "failed: out of memory" in failed
    rows = json.loads(out.read_text())
    assert rows[0] == {"name": "enet", "input_size": "32x32", "backend": "eager", "error": "out of memory at 32x32"}
    assert "latency_ms_median" in rows[1]
    assert "enet failed: out of memory at 32x32" in capsys.readouterr().err
