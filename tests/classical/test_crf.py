"""Grid and dense CRFs (pixelwise/classical/crf.py): the reference dense CRF, hand-computed grid CRF
updates, invariants, the engine hooks and the input checks."""

from __future__ import annotations


import math

import numpy as np
import pytest
import torch

from pixelwise.classical import DenseCRF, GridCRF, crf_postprocess, dense_crf, grid_crf
from pixelwise.classical.crf import softmax_rows
from pixelwise.data.scenes import CLASSES, generate_scene
from pixelwise.data.transforms import eval_transforms




def noisy_probs(labels: np.ndarray, num_classes: int, seed: int, noise: float = 1.5) -> np.ndarray:
    """Softmax of ``onehot + noise * N(0, 1)``: the argmax is right on about a third of the pixels."""
    rng = np.random.default_rng(seed)
    logits = np.eye(num_classes, dtype=np.float32)[labels].transpose(2, 0, 1)
    logits += noise * rng.standard_normal(logits.shape).astype(np.float32)
    probs = np.exp(logits - logits.max(0))
    return (probs / probs.sum(0)).astype(np.float32)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(0) == labels).mean() * 100)


def reference_dense_crf(probs: np.ndarray, image: np.ndarray, iterations: int = 5, *, pos_xy_std: float = 3.0,
                        pos_w: float = 3.0, bi_xy_std: float = 80.0, bi_rgb_std: float = 13.0,
                        bi_w: float = 10.0) -> np.ndarray:
    densecrf = pytest.importorskip("pydensecrf.densecrf")
    utils = pytest.importorskip("pydensecrf.utils")
    num_classes, height, width = probs.shape
    crf = densecrf.DenseCRF2D(width, height, num_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(utils.unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=pos_xy_std, compat=pos_w)
    crf.addPairwiseBilateral(sxy=bi_xy_std, srgb=bi_rgb_std, rgbim=np.ascontiguousarray(image), compat=bi_w)
    return np.asarray(crf.inference(iterations)).reshape(num_classes, height, width)


# --------------------------------------------------------------------------- dense CRF vs the reference
@pytest.mark.parametrize(("size", "seed"), [((120, 160), 0), ((120, 160), 1), ((375, 500), 2)])
def test_dense_crf_matches_the_reference(size: tuple[int, int], seed: int) -> None:
    scene = generate_scene(seed, size=size)
    probs = noisy_probs(scene.semantic, len(CLASSES), seed)
    expected = reference_dense_crf(probs, scene.image)
    refined = dense_crf(probs, scene.image)
    agreement = (refined.argmax(0) == expected.argmax(0)).mean()
    assert agreement >= 0.999  # measured: 100% (probabilities within 5e-7)
    np.testing.assert_allclose(refined, expected, atol=1e-4)
    before, ours, theirs = accuracy(probs, scene.semantic), accuracy(refined, scene.semantic), accuracy(
        expected, scene.semantic)  # fmt: skip
    assert ours > before + 50 and abs(ours - theirs) < 0.1  # measured: ~31% -> 99.9% for both


@pytest.mark.parametrize(
    "params",
    [
        {"iterations": 1, "pos_xy_std": 1.0, "pos_w": 1.0, "bi_xy_std": 20.0, "bi_rgb_std": 5.0, "bi_w": 4.0},
        {"iterations": 10, "pos_xy_std": 5.0, "pos_w": 0.0, "bi_xy_std": 121.0, "bi_rgb_std": 5.0, "bi_w": 4.0},
    ],
)
def test_dense_crf_matches_the_reference_with_other_parameters(params: dict[str, float]) -> None:
    scene = generate_scene(5, size=(90, 130))
    probs = noisy_probs(scene.semantic, len(CLASSES), 5)
    expected = reference_dense_crf(probs, scene.image, **params)
    np.testing.assert_allclose(dense_crf(probs, scene.image, **params), expected, atol=1e-4)


# --------------------------------------------------------------------------- dense CRF behaviour
def test_dense_crf_cleans_a_noisy_unary() -> None:
    scene = generate_scene(3, size=(96, 128))
    probs = noisy_probs(scene.semantic, len(CLASSES), 3)
    assert accuracy(dense_crf(probs, scene.image), scene.semantic) > accuracy(probs, scene.semantic) + 50


def test_dense_crf_keeps_the_input_type() -> None:
    probs = np.full((3, 6, 7), 1 / 3)
    image = np.zeros((6, 7, 3), np.uint8)
    out = dense_crf(probs, image, iterations=1)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (3, 6, 7)
    tensor = dense_crf(torch.from_numpy(probs).float(), torch.from_numpy(image), iterations=1)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_allclose(tensor.numpy(), out, atol=1e-6)


def test_dense_crf_zero_iterations_returns_the_unary() -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=(5, 6)).transpose(2, 0, 1).astype(np.float32)
    out = dense_crf(probs, np.zeros((5, 6, 3), np.uint8), iterations=0, clip=1e-8)
    np.testing.assert_allclose(out, probs, atol=1e-6)


def test_dense_crf_uniform_stays_uniform() -> None:
    image = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    out = dense_crf(np.full((4, 10, 12), 0.25, np.float32), image)
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


def test_dense_crf_follows_colour_edges() -> None:
    # Left half red, right half blue; the unary is confident only on a few pixels of each half
    # and uniform elsewhere: the appearance kernel spreads each label over its own colour.
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :20, 0] = 255
    image[:, 20:, 2] = 255
    probs = np.full((2, 20, 40), 0.5, np.float32)
    probs[:, 8:12, 2:5] = np.array([0.95, 0.05])[:, None, None]
    probs[:, 8:12, 35:38] = np.array([0.05, 0.95])[:, None, None]
    labels = dense_crf(probs, image, iterations=10, pos_w=0.0).argmax(0)
    assert (labels[:, :20] == 0).all() and (labels[:, 20:] == 1).all()


def test_dense_crf_is_differentiable() -> None:
    logits = torch.randn(3, 8, 9, requires_grad=True)
    out = dense_crf(torch.softmax(logits, 0), torch.zeros(8, 9, 3, dtype=torch.uint8), iterations=2)
    out[0].sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_dense_crf_module_equals_the_function() -> None:
    scene = generate_scene(4, size=(30, 40))
    probs = torch.from_numpy(noisy_probs(scene.semantic, len(CLASSES), 4))
    image = torch.from_numpy(scene.image)
    module = DenseCRF(iterations=3, bi_w=5.0)
    assert torch.equal(module(probs, image), dense_crf(probs, image, iterations=3, bi_w=5.0))
    assert "bi_w=5.0" in repr(module)


@pytest.mark.parametrize("num_classes", [1, 2, 7, 21])
def test_softmax_rows_equals_torch_softmax(num_classes: int) -> None:
    x = torch.randn(1000, num_classes, generator=torch.Generator().manual_seed(num_classes)) * 10
    assert torch.allclose(softmax_rows(x), torch.softmax(x, 1), atol=1e-6)
    x[0] = -500.0  # exp(-500 - max) underflows: the exact row-wise path takes over
    out = torch.empty_like(x)
    assert softmax_rows(x, out=out) is out and torch.allclose(out, torch.softmax(x, 1), atol=1e-6)


# --------------------------------------------------------------------------- grid CRF
def test_grid_crf_one_update_by_hand() -> None:
    # 1 x 3 image, 2 labels, flat colour (all edge weights = weight = 2), one iteration:
    # Q0 = P; the middle pixel's message for label l is 2 * (Q_left(l) + Q_right(l)).
    probs = np.array([[[0.9, 0.4, 0.8]], [[0.1, 0.6, 0.2]]], np.float32)
    out = grid_crf(probs, np.zeros((1, 3, 3), np.uint8), iterations=1, weight=2.0, theta=10.0)
    logits = np.log(probs[:, 0, 1]) + 2.0 * (probs[:, 0, 0] + probs[:, 0, 2])
    expected_middle = np.exp(logits) / np.exp(logits).sum()
    logits_left = np.log(probs[:, 0, 0]) + 2.0 * probs[:, 0, 1]
    np.testing.assert_allclose(out[:, 0, 1], expected_middle, rtol=1e-5)
    np.testing.assert_allclose(out[:, 0, 0], np.exp(logits_left) / np.exp(logits_left).sum(), rtol=1e-5)


def test_grid_crf_contrast_weights_by_hand() -> None:
    # Two pixels differing by 30 in red: w = weight * exp(-30^2 / (2 * 15^2)) = weight * e^-2.
    probs = np.array([[[0.7, 0.3]], [[0.3, 0.7]]], np.float32)
    image = np.array([[[0, 0, 0], [30, 0, 0]]], np.uint8)
    out = grid_crf(probs, image, iterations=1, weight=3.0, theta=15.0)
    weight = 3.0 * math.exp(-2.0)
    logits = np.log(probs[:, 0, 0]) + weight * probs[:, 0, 1]
    np.testing.assert_allclose(out[:, 0, 0], np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)


def test_grid_crf_eight_connectivity_adds_diagonals() -> None:
    # 2 x 2 image; the top-left pixel's 8-neighbourhood adds the diagonal one at weight / sqrt(2).
    probs = np.stack([np.array([[0.6, 0.5], [0.5, 0.2]]), np.array([[0.4, 0.5], [0.5, 0.8]])]).astype(np.float32)
    image = np.zeros((2, 2, 3), np.uint8)
    out4 = grid_crf(probs, image, connectivity=4, iterations=1, weight=1.0, theta=1.0)
    out8 = grid_crf(probs, image, connectivity=8, iterations=1, weight=1.0, theta=1.0)
    base = np.log(probs[:, 0, 0]) + probs[:, 0, 1] + probs[:, 1, 0]
    for out, logits in ((out4, base), (out8, base + probs[:, 1, 1] / math.sqrt(2))):
        np.testing.assert_allclose(out[:, 0, 0], np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)


def test_grid_crf_removes_outliers_but_respects_edges() -> None:
    image = np.zeros((9, 9, 3), np.uint8)
    image[:, 5:] = 200
    probs = np.full((2, 9, 9), 0.2, np.float32)
    probs[0] = 0.8
    probs[:, 4, 2] = [0.3, 0.7]  # an outlier inside the flat dark region
    probs[:, :, 5:] = np.array([0.3, 0.7])[:, None, None]  # the bright side is label 1
    labels = grid_crf(probs, image, weight=1.5).argmax(0)
    assert labels[4, 2] == 0  # outlier removed
    assert (labels[:, 5:] == 1).all() and (labels[:, :5] == 0).all()  # edge kept


def test_grid_crf_estimates_theta_like_grabcut() -> None:
    # theta=None: 2 theta^2 is the mean squared neighbour difference; for a step image with
    # one edge of 40 among 4-connected pairs that mean is known in closed form.
    image = np.zeros((1, 4, 3), np.uint8)
    image[0, 2:, 0] = 40  # pairs: 0-1 (0), 1-2 (1600), 2-3 (0): mean 1600 / 3
    probs = np.array([[[0.6, 0.6, 0.6, 0.6]], [[0.4, 0.4, 0.4, 0.4]]], np.float32)
    theta = math.sqrt(1600 / 3 / 2)
    np.testing.assert_allclose(grid_crf(probs, image, weight=2.0), grid_crf(probs, image, weight=2.0, theta=theta),
                               rtol=1e-6)  # fmt: skip


def test_grid_crf_module_and_torch_input() -> None:
    probs = torch.softmax(torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(0)), 0)
    image = torch.randint(0, 256, (5, 6, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = GridCRF(connectivity=8, weight=0.5)(probs, image)
    assert isinstance(out, torch.Tensor) and torch.allclose(out.sum(0), torch.ones(5, 6))
    assert torch.equal(out, grid_crf(probs, image, connectivity=8, weight=0.5))


# --------------------------------------------------------------------------- engine hooks
def test_postprocess_hooks_agree_with_dense_crf() -> None:
    scene = generate_scene(6, size=(24, 32))
    logits = torch.from_numpy(noisy_probs(scene.semantic, len(CLASSES), 6)).log()[None]
    hooks = crf_postprocess(iterations=2)
    expected = torch.from_numpy(dense_crf(torch.softmax(logits[0], 0).numpy(), scene.image, iterations=2).argmax(0))
    predicted = hooks.predict(logits, scene.image)
    assert predicted.shape == (24, 32) and torch.equal(predicted, expected)
    # The evaluator hook gets the normalised batch; denormalising recovers the uint8 image.
    from torchvision import tv_tensors

    sample = eval_transforms()({"image": tv_tensors.Image(torch.from_numpy(scene.image).permute(2, 0, 1)),
                                "mask": tv_tensors.Mask(torch.zeros(24, 32, dtype=torch.int64))})  # fmt: skip
    batch = {"image": torch.stack([sample["image"]] * 2), "mask": torch.zeros(2, 24, 32, dtype=torch.int64)}
    evaluated = hooks.evaluate(torch.cat([logits, logits]), batch)
    assert evaluated.shape == (2, 24, 32) and torch.equal(evaluated[1], expected)


def test_grid_postprocess_and_unknown_kind() -> None:
    hooks = crf_postprocess("grid", connectivity=8)
    assert hooks.predict(torch.zeros(1, 2, 3, 4), np.zeros((3, 4, 3), np.uint8)).shape == (3, 4)
    with pytest.raises(ValueError, match="'crfasrnn'"):
        crf_postprocess("crfasrnn")


# --------------------------------------------------------------------------- bad input
GOOD_PROBS = np.full((2, 3, 4), 0.5, np.float32)
GOOD_IMAGE = np.zeros((3, 4, 3), np.uint8)


@pytest.mark.parametrize("crf", [dense_crf, grid_crf])
@pytest.mark.parametrize(
    ("probs", "image", "error", "message"),
    [
        (np.full((2, 3, 4), 0.4, np.float32), GOOD_IMAGE, ValueError, r"sum to 1.*off by 0\.2"),
        (np.where(np.arange(24).reshape(2, 3, 4) == 5, np.nan, 0.5).astype(np.float32), GOOD_IMAGE, ValueError,
         "1 NaN"),
        (np.full((2, 3, 4), -0.5, np.float32), GOOD_IMAGE, ValueError, r"\[0, 1\].*-0\.5"),
        (np.full((3, 4), 1.0, np.float32), GOOD_IMAGE, ValueError, r"C x H x W, got shape \(3, 4\)"),
        (np.ones((2, 3, 4), np.int64), GOOD_IMAGE, TypeError, "floating point.*int64"),
        ([[0.5]], GOOD_IMAGE, TypeError, "numpy array or a torch tensor, got list"),
        (GOOD_PROBS, np.zeros((3, 5, 3), np.uint8), ValueError, r"image is \(3, 5\).*probs are \(3, 4\)"),
        (GOOD_PROBS, np.zeros((3, 4, 3), np.float32), TypeError, "uint8.*float32"),
        (GOOD_PROBS, np.zeros((3, 4, 4), np.uint8), ValueError, r"H x W x 3.*\(3, 4, 4\)"),
        (GOOD_PROBS, np.zeros((3, 4), np.uint8), ValueError, r"H x W x 3.*\(3, 4\)"),
    ],
)
def test_bad_input(crf, probs, image, error, message) -> None:  # noqa: ANN001
    with pytest.raises(error, match=message):
        crf(probs, image)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="connectivity must be 4 or 8, got 6"):
        grid_crf(GOOD_PROBS, GOOD_IMAGE, connectivity=6)
    with pytest.raises(ValueError, match="theta must be > 0"):
        grid_crf(GOOD_PROBS, GOOD_IMAGE, theta=0.0)
    with pytest.raises(ValueError, match="bi_rgb_std|rgb_std must be > 0, got -1"):
        dense_crf(GOOD_PROBS, GOOD_IMAGE, bi_rgb_std=-1.0)
    with pytest.raises(ValueError, match="iterations must be >= 0, got -1"):
        dense_crf(GOOD_PROBS, GOOD_IMAGE, iterations=-1)
