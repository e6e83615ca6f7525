"""Property tests of the confusion-matrix metrics (pixelwise.metrics).

Checked against a plain numpy count for generated label maps of any size (empty, 1 pixel, past the
CPU chunk of 2^15 pixels), class count, ignore index (255, none, negative, huge) and dtype:

- the matrix is the pairwise count of the non-ignored pixels, whatever their order, batching or
  dtype (torch int64 / uint8, numpy);
- permuting pixels or samples, or splitting them into batches, changes nothing;
- a perfect prediction scores 1.0 everywhere it is defined, and absent classes are NaN;
- every score is in [0, 1] or NaN, and NaN exactly where the module docstring says;
- ignored pixels never count, whatever is predicted there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pixelwise.metrics import ConfusionMatrix, confusion_matrix, scores_from_confusion_matrix  # noqa: E402

FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SCALARS = ("pixel_accuracy", "mean_accuracy", "miou", "fwiou", "dice")


@st.composite
def label_maps(draw, max_pixels: int = 3000):
    """``(pred, target, num_classes, ignore_index)``: N x H x W int64 label maps (targets may hold the
    ignore index, predictions are classes). Now and then past the CPU chunk of 2^15 pixels."""
    num_classes = draw(st.integers(1, 6))
    ignore_index = draw(st.sampled_from([255, None, -1, num_classes, 10**6]))
    if draw(st.integers(0, 9)) == 0:
        shape = (1, 1, (1 << 15) + draw(st.integers(1, 3000)))  # more than one CPU chunk
    else:
        shape = (draw(st.integers(0, 3)), draw(st.integers(1, 30)), draw(st.integers(1, 30)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    target = rng.integers(0, num_classes, shape)
    if ignore_index is not None:
        target[rng.random(shape) < draw(st.sampled_from([0.0, 0.2, 1.0]))] = ignore_index
    pred = rng.integers(0, num_classes, shape)
    return torch.from_numpy(pred), torch.from_numpy(target), num_classes, ignore_index


def numpy_counts(pred, target, num_classes, ignore_index) -> np.ndarray:
    """The reference count: one loop-free numpy histogram over the non-ignored pixels."""
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    keep = target != ignore_index if ignore_index is not None else np.ones(target.shape, bool)
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (target[keep], pred[keep]), 1)
    return counts


@pytest.mark.reliability(fault="the matrix equals a plain numpy count (any size, dtype, ignore index, chunking)",
                         outcome="holds for every generated case")
@FIXTURE_OK
@given(case=label_maps(), as_numpy=st.booleans(), as_uint8=st.booleans())
def test_matrix_is_the_pixel_count(record_inputs, case, as_numpy, as_uint8):
    pred, target, num_classes, ignore_index = case
    record_inputs("confusion_matrix")
    if as_uint8 and (ignore_index is None or 0 <= ignore_index < 256):
        pred, target = pred.to(torch.uint8), target.to(torch.uint8)
    if as_numpy:
        pred, target = pred.numpy(), target.numpy()
    matrix = confusion_matrix(pred, target, num_classes, ignore_index)
    assert matrix.dtype == torch.int64 and matrix.shape == (num_classes, num_classes)
    np.testing.assert_array_equal(matrix.numpy(), numpy_counts(pred, target, num_classes, ignore_index))


@pytest.mark.reliability(fault="permuting pixels or samples, or splitting them into batches, changes nothing",
                         outcome="holds for every generated case")
@FIXTURE_OK
@given(case=label_maps(), seed=st.integers(0, 2**32 - 1), batches=st.integers(1, 4))
def test_order_and_batching_change_nothing(record_inputs, case, seed, batches):
    pred, target, num_classes, ignore_index = case
    record_inputs("ConfusionMatrix")
    whole = ConfusionMatrix(num_classes, ignore_index)
    whole.update(pred, target)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(pred.numel(), generator=generator)
    flat_pred, flat_target = pred.reshape(-1)[order], target.reshape(-1)[order]
    split = ConfusionMatrix(num_classes, ignore_index)
    for part_pred, part_target in zip(flat_pred.tensor_split(batches), flat_target.tensor_split(batches)):
        split.update(part_pred, part_target)
    assert torch.equal(whole.matrix, split.matrix)
    samples = ConfusionMatrix(num_classes, ignore_index)  # the samples of the batch, in reverse order
    for index in reversed(range(pred.shape[0])):
        samples.update(pred[index], target[index])
    assert torch.equal(whole.matrix, samples.matrix)
    first, second = whole.compute(), split.compute()
    for key in SCALARS:
        assert first[key] == second[key] or (math.isnan(first[key]) and math.isnan(second[key]))


@pytest.mark.reliability(fault="a perfect prediction (pred == target wherever not ignored)",
                         outcome="scores 1.0 for every class present and NaN for absent ones, in every case")
@FIXTURE_OK
@given(case=label_maps())
def test_perfect_prediction_scores_one(record_inputs, case):
    _, target, num_classes, ignore_index = case
    record_inputs("ConfusionMatrix")
    valid = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    # Anything at the ignored pixels, the truth elsewhere.
    pred = torch.where(valid, target, torch.zeros_like(target))
    metric = ConfusionMatrix(num_classes, ignore_index)
    metric.update(pred, target)
    scores = metric.compute()
    present = set(target[valid].unique().tolist())
    for key in ("iou", "accuracy", "dice"):
        for cls, value in enumerate(scores["per_class"][key]):
            assert (value == 1.0) if cls in present else math.isnan(value), (key, cls, value)
    for key in SCALARS:
        assert scores[key] == 1.0 if present else math.isnan(scores[key]), (key, scores[key])


@pytest.mark.reliability(fault="every score of any prediction lies in [0, 1], NaN only where undefined",
                         outcome="holds for every generated case")
@FIXTURE_OK
@given(case=label_maps())
def test_scores_are_in_0_1_and_nan_only_where_undefined(record_inputs, case):
    pred, target, num_classes, ignore_index = case
    record_inputs("scores_from_confusion_matrix")
    counts = numpy_counts(pred, target, num_classes, ignore_index)
    scores = scores_from_confusion_matrix(torch.from_numpy(counts))
    truth, predicted, hits = counts.sum(1), counts.sum(0), np.diag(counts)
    for cls in range(num_classes):
        union = truth[cls] + predicted[cls] - hits[cls]
        iou, accuracy, dice = (scores["per_class"][key][cls] for key in ("iou", "accuracy", "dice"))
        assert math.isnan(iou) == (union == 0) and math.isnan(dice) == (union == 0)
        assert math.isnan(accuracy) == (truth[cls] == 0)  # predicted but absent: accuracy NaN, IoU 0
        for value in (iou, accuracy, dice):
            assert math.isnan(value) or 0.0 <= value <= 1.0
        if not math.isnan(iou):
            assert math.isclose(iou, hits[cls] / union) and math.isclose(dice, 2 * hits[cls] / (union + hits[cls]))
    for key in SCALARS:
        assert math.isnan(scores[key]) or 0.0 <= scores[key] <= 1.0 + 1e-12, (key, scores[key])
    assert math.isnan(scores["pixel_accuracy"]) == (counts.sum() == 0)


@pytest.mark.reliability(fault="predictions changed at ignored pixels, and ignored pixels added",
                         outcome="the matrix and every score unchanged, in every generated case")
@FIXTURE_OK
@given(case=label_maps(), seed=st.integers(0, 2**32 - 1), extra=st.integers(0, 500))
def test_ignored_pixels_never_count(record_inputs, case, seed, extra):
    pred, target, num_classes, ignore_index = case
    hypothesis.assume(ignore_index is not None)
    record_inputs("confusion_matrix")
    reference = confusion_matrix(pred, target, num_classes, ignore_index)
    generator = torch.Generator().manual_seed(seed)
    ignored = target == ignore_index
    other = torch.randint(0, num_classes, pred.shape, generator=generator)
    changed = torch.where(ignored, other, pred)
    assert torch.equal(confusion_matrix(changed, target, num_classes, ignore_index), reference)
    more_pred = torch.cat([pred.reshape(-1), torch.randint(0, num_classes, (extra,), generator=generator)])
    more_target = torch.cat([target.reshape(-1), torch.full((extra,), ignore_index, dtype=target.dtype)])
    assert torch.equal(confusion_matrix(more_pred, more_target, num_classes, ignore_index), reference)
