"""Scores of unsupervised segmentations: Hungarian matching, majority for leftovers, boundary recall, UE."""

import itertools
import math

import numpy as np
import pytest
import torch

from pixelwise.classical.evaluation import (
    ClusterEvaluator,
    boundary_recall,
    clusters_to_classes,
    evaluate_clusters,
    match_clusters,
    undersegmentation_error,
)

BLOCKS = np.array([[0, 0, 1, 1]] * 2 + [[2, 2, 3, 3]] * 2)  # four 2x2 blocks
HALVES = np.array([[0, 0, 1, 1]] * 4)  # left and right halves


def test_a_permuted_labelling_is_perfect():
    truth = np.random.default_rng(0).integers(0, 4, (9, 11))
    clusters = np.array([7, 3, 12, 5])[truth]  # a relabelling with arbitrary ids
    scores = evaluate_clusters(clusters, truth, num_classes=4)
    assert scores["miou"] == 1.0 and scores["pixel_accuracy"] == 1.0
    assert match_clusters(clusters, truth, 4) == {7: 0, 3: 1, 12: 2, 5: 3}


def test_matching_is_one_to_one_not_greedy():
    # Both clusters are mostly class 0; a greedy (majority) mapping would give class 1 no cluster.
    clusters = np.array([[0, 0, 0, 1, 1, 1]])
    truth = np.array([[0, 0, 0, 0, 0, 1]])
    assert match_clusters(clusters, truth, 2) == {0: 0, 1: 1}
    scores = evaluate_clusters(clusters, truth, 2)
    # Predicted [0 0 0 1 1 1]: class 0 IoU 3/5, class 1 IoU 1/3.
    assert scores["per_class"]["iou"] == pytest.approx([3 / 5, 1 / 3])


def test_hungarian_matching_maximises_the_matched_overlap():
    generator = np.random.default_rng(1)
    for _ in range(5):
        truth = generator.integers(0, 4, (6, 7))
        clusters = generator.integers(0, 4, (6, 7))
        mapping = match_clusters(clusters, truth, 4)
        matched = sum(((clusters == c) & (truth == mapping[c])).sum() for c in range(4))
        best = max(sum(((clusters == c) & (truth == p[c])).sum() for c in range(4))
                   for p in itertools.permutations(range(4)))
        assert matched == best and sorted(mapping.values()) == [0, 1, 2, 3]


def test_extra_clusters_take_their_majority_class():
    clusters = np.array([[0, 0, 1, 1, 2, 2, 2]])
    truth = np.array([[0, 0, 1, 1, 1, 1, 0]])
    # Hungarian pairs 0->0 and 1->1 (or 2->1); the leftover takes its majority class 1.
    assert match_clusters(clusters, truth, 2) == {0: 0, 1: 1, 2: 1}
    np.testing.assert_array_equal(clusters_to_classes(clusters, truth, 2), [[0, 0, 1, 1, 1, 1, 1]])


def test_fewer_clusters_than_classes_leaves_classes_unpredicted():
    clusters = np.zeros((2, 3), np.int64)
    truth = np.array([[0, 0, 0], [0, 2, 2]])
    scores = evaluate_clusters(clusters, truth, num_classes=3)
    assert scores["per_class"]["iou"][0] == pytest.approx(4 / 6)
    assert math.isnan(scores["per_class"]["iou"][1]) and scores["per_class"]["iou"][2] == 0.0


def test_ignored_pixels_take_no_part():
    clusters = np.array([[0, 0, 1, 1]])
    truth = np.array([[1, 255, 0, 255]])
    assert match_clusters(clusters, truth, 2) == {0: 1, 1: 0}
    assert evaluate_clusters(clusters, truth, 2)["pixel_accuracy"] == 1.0
    assert evaluate_clusters(clusters, np.array([[1, 1, 0, 1]]), 2, ignore_index=None)["pixel_accuracy"] == 0.75
    with pytest.raises(ValueError, match=r"labels \[255\] outside \[0, 2\) other than ignore_index=None"):
        evaluate_clusters(clusters, truth, 2, ignore_index=None)


def test_evaluator_matches_each_image_on_its_own_and_accumulates():
    evaluator = ClusterEvaluator(num_classes=2)
    evaluator.update(np.array([[0, 0, 1, 1]]), np.array([[0, 0, 1, 1]]))
    evaluator.update(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[1, 1, 0, 1]]))  # cluster ids swapped meaning
    assert evaluator.confusion.matrix.tolist() == [[3, 0], [1, 4]]
    evaluator.reset()
    assert evaluator.confusion.matrix.sum() == 0


@pytest.mark.parametrize("clusters, truth, message", [
    (np.zeros((2, 2), np.int64), np.full((2, 2), 5), r"target has labels \[5\] outside \[0, 3\)"),
    (np.zeros((2, 3), np.int64), np.zeros((2, 2), np.int64), "one shape"),
    (np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int64), "segments must be an integer label map"),
])  # fmt: skip
def test_bad_cluster_input(clusters, truth, message):
    with pytest.raises(ValueError, match=message):
        evaluate_clusters(clusters, truth, num_classes=3)


@pytest.mark.parametrize("tolerance, expected", [(0, 4 / 7), (1, 6 / 7), (2, 1.0)])
def test_boundary_recall_of_halves_against_blocks(tolerance, expected):
    # Ground-truth boundary pixels: column 1 (4 pixels) and row 1 (4, one shared) = 7. The halves'
    # boundary is column 1: it covers column 1 and (1, 1) at d=0; (1, 0) and (1, 2) lie 1 away,
    # (1, 3) 2 away.
    assert boundary_recall(HALVES, BLOCKS, tolerance=tolerance) == pytest.approx(expected)
    assert boundary_recall(torch.from_numpy(HALVES), torch.from_numpy(BLOCKS), tolerance) == pytest.approx(expected)


def test_boundary_recall_edge_cases():
    assert boundary_recall(BLOCKS, BLOCKS, tolerance=0) == 1.0
    assert boundary_recall(np.zeros((4, 4), np.int64), BLOCKS) == 0.0
    assert math.isnan(boundary_recall(BLOCKS, np.zeros((4, 4), np.int64)))
    assert boundary_recall(BLOCKS, HALVES) == 1.0  # finer superpixels recall everything
    with pytest.raises(ValueError, match="tolerance must be an integer number of pixels >= 0, got -1"):
        boundary_recall(BLOCKS, BLOCKS, tolerance=-1)


def test_undersegmentation_error_hand_computed():
    # Each half (8 pixels) overlaps two 4-pixel blocks: min(4, 4) leaks per overlap, 4 overlaps.
    assert undersegmentation_error(HALVES, BLOCKS) == pytest.approx(16 / 16)
    assert undersegmentation_error(BLOCKS, HALVES) == 0.0  # nested superpixels leak nothing
    assert undersegmentation_error(BLOCKS * 10 + 3, BLOCKS) == 0.0
    # One superpixel of 3 pixels: 2 in segment 0, 1 in segment 1 -> min(2, 1) + min(1, 2) = 2.
    assert undersegmentation_error(np.array([[0, 0, 0, 1]]), np.array([[0, 0, 1, 1]])) == pytest.approx(2 / 4)
