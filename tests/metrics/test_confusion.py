"""Tests for pixelwise/metrics/confusion.py: hand-computed matrices and scores, checks, oracles."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pixelwise.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    format_table,
    per_class_table,
    scores_from_confusion_matrix,
)
from pixelwise.metrics import confusion as confusion_module

# Hand example, 3 classes. Valid (target, pred) pairs: (0,0) (0,1) (1,1) (1,2) (2,2);
# the last pixel is ignored. t = [2, 2, 1], column sums = [1, 2, 2], hits = [1, 1, 1].
TARGET = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [2, 2, 0]])
MATRIX = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 1]])

# Absent classes, 4 classes: class 2 is predicted once but never in the ground truth,
# class 3 appears nowhere. t = [2, 2, 0, 0], column sums = [1, 2, 1, 0], hits = [1, 2, 0, 0].
ABSENT_TARGET = torch.tensor([0, 0, 1, 1])
ABSENT_PRED = torch.tensor([0, 2, 1, 1])


def scores(pred, target, num_classes: int, **kwargs) -> dict:
    metric = ConfusionMatrix(num_classes, **kwargs)
    metric.update(pred, target)
    return metric.compute()


def assert_floats(actual: list[float], expected: list[float]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert (math.isnan(a) and math.isnan(e)) or a == pytest.approx(e), (actual, expected)


def test_matrix_rows_are_ground_truth_and_columns_prediction() -> None:
    metric = ConfusionMatrix(3)
    metric.update(PRED, TARGET)
    assert metric.matrix.dtype == torch.int64
    assert torch.equal(metric.matrix, MATRIX)
    # One off-diagonal pixel, ground truth 0 predicted as 2, lands in row 0, column 2.
    assert confusion_matrix(torch.tensor([2]), torch.tensor([0]), 3)[0, 2] == 1


def test_scores_match_the_fcn_definitions_by_hand() -> None:
    result = scores(PRED, TARGET, 3)
    assert result["pixel_accuracy"] == pytest.approx(3 / 5)
    assert result["mean_accuracy"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert result["miou"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert result["fwiou"] == pytest.approx((2 * 1 / 2 + 2 * 1 / 3 + 1 * 1 / 2) / 5)
    assert result["dice"] == pytest.approx((2 / 3 + 2 / 4 + 2 / 3) / 3)
    assert_floats(result["per_class"]["iou"], [1 / 2, 1 / 3, 1 / 2])
    assert_floats(result["per_class"]["accuracy"], [1 / 2, 1 / 2, 1])
    assert_floats(result["per_class"]["dice"], [2 / 3, 1 / 2, 2 / 3])


def test_absent_classes_are_nan_and_left_out_of_the_means() -> None:
    result = scores(ABSENT_PRED, ABSENT_TARGET, 4)
    # Class 2: predicted but absent from the ground truth -> IoU and Dice 0, accuracy NaN.
    # Class 3: absent everywhere -> NaN everywhere.
    assert_floats(result["per_class"]["iou"], [1 / 2, 1, 0, math.nan])
    assert_floats(result["per_class"]["accuracy"], [1 / 2, 1, math.nan, math.nan])
    assert_floats(result["per_class"]["dice"], [2 / 3, 1, 0, math.nan])
    assert result["miou"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert result["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert result["dice"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert result["fwiou"] == pytest.approx((2 * 1 / 2 + 2 * 1) / 4)
    assert result["pixel_accuracy"] == pytest.approx(3 / 4)


def test_nothing_seen_gives_nan_scores() -> None:
    result = ConfusionMatrix(2).compute()
    assert all(math.isnan(result[key]) for key in ("pixel_accuracy", "mean_accuracy", "miou", "fwiou", "dice"))
    assert_floats(result["per_class"]["iou"], [math.nan, math.nan])


def test_ignored_pixels_are_skipped_whatever_their_prediction() -> None:
    target = torch.tensor([0, 1, 255, 255])
    for ignored_pred in (0, 1, 7, 255):  # in range (dense path) and out of range (exact path)
        pred = torch.tensor([0, 1, ignored_pred, ignored_pred])
        assert torch.equal(confusion_matrix(pred, target, 2), torch.tensor([[1, 0], [0, 1]]))


def test_other_ignore_indices() -> None:
    target = torch.tensor([0, 1, -1, 1])
    pred = torch.tensor([0, 0, 1, 1])
    expected = torch.tensor([[1, 0], [1, 1]])
    assert torch.equal(confusion_matrix(pred, target, 2, ignore_index=-1), expected)
    # Without an ignore_index every pixel counts: (0,0) (1,0) (0,1) (1,1).
    everything = confusion_matrix(pred, target.clamp(min=0), 2, ignore_index=None)
    assert torch.equal(everything, torch.tensor([[1, 1], [1, 1]]))
    with pytest.raises(ValueError, match="ignore_index=1 is a class index"):
        ConfusionMatrix(2, ignore_index=1)


def test_numpy_and_narrow_integer_inputs_give_the_same_matrix() -> None:
    expected = confusion_matrix(PRED, TARGET, 3)
    assert torch.equal(confusion_matrix(PRED.numpy(), TARGET.numpy(), 3), expected)
    assert torch.equal(confusion_matrix(PRED.numpy().astype(np.uint8), TARGET.numpy().astype(np.uint8), 3), expected)
    assert torch.equal(confusion_matrix(PRED.to(torch.uint8), TARGET.to(torch.uint8), 3), expected)
    assert torch.equal(confusion_matrix(PRED.to(torch.int32), TARGET, 3), expected)
    read_only = TARGET.numpy().copy()
    read_only.setflags(write=False)  # what np.asarray(PIL image) gives
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(confusion_matrix(PRED.numpy(), read_only, 3), expected)


def test_any_batch_shape() -> None:
    expected = confusion_matrix(PRED.flatten(), TARGET.flatten(), 3)
    for shape in [(6,), (2, 3), (1, 2, 3), (1, 1, 2, 3), (3, 2, 1)]:
        assert torch.equal(confusion_matrix(PRED.reshape(shape), TARGET.reshape(shape), 3), expected)
    # A non-contiguous view counts the same pixels.
    assert torch.equal(confusion_matrix(PRED.t(), TARGET.t(), 3), expected)


def test_accumulating_updates_equals_one_update_on_the_concatenation() -> None:
    generator = torch.Generator().manual_seed(0)
    preds = [torch.randint(0, 5, (2, 7, 9), generator=generator) for _ in range(3)]
    targets = [torch.randint(0, 6, (2, 7, 9), generator=generator) for _ in range(3)]
    targets = [torch.where(t == 5, 255, t) for t in targets]
    metric = ConfusionMatrix(5)
    for pred, target in zip(preds, targets):
        metric.update(pred, target)
    whole = ConfusionMatrix(5)
    whole.update(torch.cat(preds), torch.cat(targets))
    assert torch.equal(metric.matrix, whole.matrix)
    assert metric.compute() == whole.compute()
    metric.reset()
    assert metric.matrix.sum() == 0


def test_chunked_and_exact_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 4, (3, 11, 13), generator=generator)
    target = torch.randint(0, 5, (3, 11, 13), generator=generator).masked_fill_(pred == 3, 255)
    target[target == 4] = 255
    dense = confusion_matrix(pred, target, 4)
    monkeypatch.setattr(confusion_module, "_CPU_CHUNK", 10)  # many chunks and a ragged last one
    assert torch.equal(confusion_matrix(pred, target, 4), dense)
    monkeypatch.setattr(confusion_module, "_MAX_DENSE_BINS", 1)  # force the masked path
    assert torch.equal(confusion_matrix(pred, target, 4), dense)
    assert dense.sum() == (target != 255).sum()


def test_target_out_of_range_names_the_values() -> None:
    with pytest.raises(ValueError, match=r"target .*outside \[0, 3\).*: 3, 17$"):
        confusion_matrix(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 17, 3, 255]), 3)
    with pytest.raises(ValueError, match=r"target .*: -2$"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, -2]), 3)


def test_pred_out_of_range_names_the_values() -> None:
    with pytest.raises(ValueError, match=r"pred .*outside \[0, 3\).*: 5$"):
        confusion_matrix(torch.tensor([0, 5]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match=r"pred .*: 255; a prediction cannot be ignore_index=255"):
        confusion_matrix(torch.tensor([0, 255]), torch.tensor([0, 1]), 3)


def test_shape_dtype_and_class_errors() -> None:
    with pytest.raises(ValueError, match=r"pred \(2, 3\) vs target \(3, 2\)"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="argmax"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="num_classes must be positive"):
        ConfusionMatrix(0)


def test_scores_from_matrix_accepts_any_integer_matrix() -> None:
    result = scores_from_confusion_matrix(MATRIX.to(torch.int32))
    assert result["miou"] == pytest.approx(4 / 9)


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_torchmetrics(seed: int) -> None:
    classification = pytest.importorskip("torchmetrics.classification")
    generator = torch.Generator().manual_seed(seed)
    num_classes = 7
    # Class 6 never appears; class 5 only in the predictions: exercises the absent-class rules.
    target = torch.randint(0, 5, (4, 16, 16), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.1] = 255
    pred = torch.randint(0, 6, (4, 16, 16), generator=generator)
    metric = ConfusionMatrix(num_classes)
    metric.update(pred, target)
    result = metric.compute()

    common = dict(num_classes=num_classes, ignore_index=255)
    matrix = classification.MulticlassConfusionMatrix(**common)(pred, target)
    assert torch.equal(metric.matrix, matrix)
    macro = classification.MulticlassJaccardIndex(**common, average="macro")(pred, target)
    weighted = classification.MulticlassJaccardIndex(**common, average="weighted")(pred, target)
    per_class = classification.MulticlassJaccardIndex(**common, average="none")(pred, target)
    assert result["miou"] == pytest.approx(macro.item(), rel=1e-6)
    assert result["fwiou"] == pytest.approx(weighted.item(), rel=1e-6)
    assert result["per_class"]["iou"][:6] == pytest.approx(per_class[:6].tolist(), rel=1e-6)
    accuracy = classification.MulticlassAccuracy(**common, average="micro")(pred, target)
    assert result["pixel_accuracy"] == pytest.approx(accuracy.item(), rel=1e-6)


def test_format_table_shows_absent_classes_and_summary() -> None:
    table = format_table(scores(ABSENT_PRED, ABSENT_TARGET, 4), ["sky", "road", "car", "bike"])
    lines = table.splitlines()
    assert lines[0].split() == ["class", "IoU", "%", "accuracy", "%", "Dice", "%"]
    assert lines[1].split() == ["sky", "50.00", "50.00", "66.67"]
    assert lines[3].split() == ["car", "0.00", "absent", "0.00"]
    assert lines[4].split() == ["bike", "absent", "absent", "absent"]
    assert "mIoU %             50.00" in table
    assert "fwIoU %            75.00" in table
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        format_table(scores(ABSENT_PRED, ABSENT_TARGET, 4), ["a", "b", "c"])


def test_per_class_table_maps_names_to_scores_with_none_for_absent() -> None:
    table = per_class_table(scores(ABSENT_PRED, ABSENT_TARGET, 4), ["sky", "road", "car", "bike"])
    assert table["sky"] == {"iou": pytest.approx(1 / 2), "accuracy": pytest.approx(1 / 2), "dice": pytest.approx(2 / 3)}
    assert table["car"] == {"iou": 0.0, "accuracy": None, "dice": 0.0}
    assert table["bike"] == {"iou": None, "accuracy": None, "dice": None}
    with pytest.raises(ValueError, match="unique"):
        per_class_table(scores(ABSENT_PRED, ABSENT_TARGET, 4), ["a", "a", "b", "c"])


def test_all_reduce_is_a_no_op_without_distributed() -> None:
    metric = ConfusionMatrix(3)
    metric.update(PRED, TARGET)
    metric.all_reduce()
    assert torch.equal(metric.matrix, MATRIX)


def _all_reduce_worker(rank: int, world_size: int, store_path: str, out_path: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size)
    try:
        metric = ConfusionMatrix(3)
        metric.update(PRED[rank], TARGET[rank])  # each rank sees one row of the hand example
        metric.all_reduce()
        torch.save(metric.matrix, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or "fork" not in mp.get_all_start_methods(), reason="needs torch.distributed and fork"
)
def test_all_reduce_sums_over_processes(tmp_path) -> None:
    store, out = str(tmp_path / "store"), str(tmp_path / "matrix")
    mp.start_processes(_all_reduce_worker, args=(2, store, out), nprocs=2, start_method="fork")
    for rank in range(2):
        assert torch.equal(torch.load(f"{out}.{rank}"), MATRIX)
