"""The README's Python example runs as written, and its model table is the generated one."""

import re
from pathlib import Path

from pixelwise.models import model_table_markdown

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)  # the example writes runs/readme
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "readme" / "best.pt").exists()
    assert "mIoU" in capsys.readouterr().out


def test_model_table_is_current():
    assert model_table_markdown() in README


def test_reliability_section_lists_every_marked_test():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reliability", Path(__file__).parents[1] / "benchmarks" / "reliability.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    listed = README.split(report.START, 1)[1].split(report.END, 1)[0]
    missing = [f"{mark.path}::{mark.test}" for mark in report.reliability_marks()
               if f"| {mark.fault} | {mark.outcome} | `{Path(mark.path).name}::{mark.test}` |" not in listed]
    assert not missing, f"not in README's Reliability section (run python benchmarks/reliability.py --write): {missing}"
