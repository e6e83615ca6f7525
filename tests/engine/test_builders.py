import pytest
import torch

from pixelwise.engine import TrainConfig, build_trainer
from pixelwise.engine.builders import prepare_run_dir, resolve_device


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available; use --device cpu"):
            resolve_device("cuda")


def test_training_split_smaller_than_a_batch_is_explained(tmp_path):
    config = TrainConfig(model="fcn8s_tiny", dataset="synthetic", dataset_kwargs={"size": 32, "num_samples": 3},
                         batch_size=4, crop=32, out=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"3 samples .* fewer than batch_size=4"):
        build_trainer(config, progress=False)


def test_prepare_run_dir_creates_and_keeps_foreign_files(tmp_path):
    out = prepare_run_dir(tmp_path / "a" / "b", resume=False, overwrite=False)
    assert out.is_dir()
    (out / "log.jsonl").write_text("{}\n")
    (out / "mine.txt").write_text("keep")
    prepare_run_dir(out, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
