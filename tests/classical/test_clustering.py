"""k-means in XYRGB: feature scaling, size invariance, agreement with a reference Lloyd, empty clusters, errors."""

import numpy as np
import pytest
import torch

from pixelwise.classical.clustering import (
    KMeansXYRGB,
    _argmin_dim0,
    kmeans,
    kmeans_xyrgb,
    relabel_sequential,
    xyrgb_features,
)
from pixelwise.classical.evaluation import evaluate_clusters
from pixelwise.data.scenes import generate_scene


def drawn_scene(size: int, seed: int) -> np.ndarray:
    """The same four-region scene (sky, ground, red disk, yellow box) drawn at any size, with noise."""
    centres = (np.arange(size) + 0.5) / size
    y, x = np.meshgrid(centres, centres, indexing="ij")
    image = np.empty((size, size, 3))
    image[:] = (120, 170, 230)
    image[y > 0.7] = (110, 80, 40)
    image[(x - 0.3) ** 2 + (y - 0.35) ** 2 < 0.15**2] = (220, 40, 40)
    image[(x > 0.55) & (x < 0.9) & (y > 0.2) & (y < 0.5)] = (240, 220, 40)
    image += np.random.default_rng(seed).normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def upsample2(labels: np.ndarray) -> np.ndarray:
    return labels.repeat(2, 0).repeat(2, 1)


def reference_lloyd(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Textbook Lloyd in float64 with explicit distances, until the labels stop changing."""
    labels = None
    while True:
        distances = ((points[:, None, :] - centroids[None]) ** 2).sum(-1)
        new_labels = distances.argmin(1)
        if labels is not None and np.array_equal(new_labels, labels):
            return labels, centroids
        labels = new_labels
        centroids = np.stack([points[labels == j].mean(0) for j in range(len(centroids))])


def test_features_are_pixel_centres_over_the_longer_side_and_colours_over_255():
    image = np.zeros((2, 4, 3), np.uint8)
    image[1, 3] = (255, 51, 0)
    features = xyrgb_features(image, spatial_weight=2.0).view(2, 4, 5)
    assert torch.allclose(features[1, 3], torch.tensor([2 * 3.5 / 4, 2 * 1.5 / 4, 1.0, 0.2, 0.0]))
    assert torch.allclose(features[0, 0], torch.tensor([0.25, 0.25, 0, 0, 0]))


def test_features_of_a_2x_image_average_to_those_of_the_small_one():
    small = generate_scene(0, size=16).image
    big = upsample2(small)
    big_features = xyrgb_features(big, spatial_weight=1.5).view(16, 2, 16, 2, 5).mean((1, 3))
    assert torch.allclose(big_features, xyrgb_features(small, spatial_weight=1.5).view(16, 16, 5), atol=1e-6)


@pytest.mark.parametrize("spatial_weight", [0.5, 1.0])
def test_a_small_image_solution_is_a_fixed_point_at_twice_the_size(spatial_weight):
    # Started from the 64 px solution, k-means on the 128 px copy of the image must stay put:
    # a spatial scale that depended on the size would pull the centroids away.
    small = generate_scene(1, size=64).image
    found = kmeans(xyrgb_features(small, spatial_weight), 6)
    again = kmeans(xyrgb_features(upsample2(small), spatial_weight), 6, init=found.centroids)
    agreement = (again.labels.view(128, 128).numpy() == upsample2(found.labels.view(64, 64).numpy())).mean()
    assert agreement > 0.98
    assert (again.centroids - found.centroids).abs().max() < 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_same_scene_at_64_and_128_px_gives_the_same_segmentation(seed):
    big = kmeans_xyrgb(drawn_scene(128, seed), 4, spatial_weight=0.25, seed=seed)
    small = kmeans_xyrgb(drawn_scene(64, seed + 10), 4, spatial_weight=0.25, seed=seed)
    # Up to label permutation: match the clusters of one to those of the other.
    assert evaluate_clusters(upsample2(small), big, num_classes=4)["pixel_accuracy"] > 0.99


def test_spatial_weight_zero_groups_by_colour_alone():
    colours = np.random.default_rng(0).integers(0, 2, (12, 12))  # scattered: position is no help
    image = np.where(colours[..., None] == 1, np.uint8(200), np.uint8(30)).astype(np.uint8).repeat(3, 2)
    labels = kmeans_xyrgb(image, 2, spatial_weight=0.0)
    assert evaluate_clusters(labels, colours, num_classes=2)["pixel_accuracy"] == 1.0


def test_large_spatial_weight_splits_a_uniform_image_into_compact_pieces():
    labels = kmeans_xyrgb(np.full((8, 16, 3), 90, np.uint8), 2, spatial_weight=5.0)
    np.testing.assert_array_equal(labels, np.repeat([[0] * 8 + [1] * 8], 8, axis=0))


def test_identical_pixels_give_one_cluster_without_nan():
    labels = kmeans_xyrgb(np.full((5, 5, 3), 7, np.uint8), 3, spatial_weight=0.0)
    np.testing.assert_array_equal(labels, np.zeros((5, 5), np.int64))


@pytest.mark.parametrize("k", [1, 3, 6])
def test_kmeans_matches_textbook_lloyd_from_the_same_start(k):
    generator = np.random.default_rng(k)
    centres = generator.uniform(-5, 5, (k, 3))
    points = (centres[generator.integers(0, k, 600)] + generator.normal(0, 1.5, (600, 3))).astype(np.float32)
    start = points[generator.choice(600, k, replace=False)]
    labels, centroids = reference_lloyd(points.astype(np.float64), start.astype(np.float64))
    result = kmeans(torch.from_numpy(points), k, init=torch.from_numpy(start), tolerance=0.0, iterations=1000)
    np.testing.assert_array_equal(result.labels.numpy(), labels)
    np.testing.assert_allclose(result.centroids.numpy(), centroids, atol=1e-5)
    reference_inertia = ((points - centroids[labels]) ** 2).sum()
    assert result.inertia == pytest.approx(reference_inertia, rel=1e-5)


@pytest.mark.parametrize("iterations, tolerance", [(1, 0.0), (2, 0.0), (100, 1e9)])
def test_early_stops_return_labels_that_match_the_centroids(iterations, tolerance):
    features = xyrgb_features(generate_scene(4, size=24).image)
    result = kmeans(features, 5, iterations=iterations, tolerance=tolerance)
    assert result.iterations == (1 if tolerance else iterations)  # a huge tolerance stops after one update
    assert torch.equal(result.labels, torch.cdist(features, result.centroids).argmin(1))
    assert result.inertia == pytest.approx(((features - result.centroids[result.labels]) ** 2).sum().item())


def test_empty_cluster_is_reseeded_at_the_farthest_point():
    points = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    # Centroid 1 (at 100) wins no point; the point farthest from its own centroid (10.1, which
    # is 5.1 from centroid 2 at 5) becomes its new centre.
    result = kmeans(points, 3, init=torch.tensor([[0.0], [100.0], [5.0]]), tolerance=0.0)
    assert result.labels.tolist() == [0, 0, 2, 1]
    assert result.centroids[:, 0].tolist() == pytest.approx([0.05, 10.1, 10.0])
    assert result.inertia == pytest.approx(0.005)


def test_kmeans_plus_plus_finds_well_separated_blobs():
    generator = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 20]], np.float32)
    points = torch.from_numpy(np.repeat(centres, 50, 0) + generator.normal(0, 0.5, (250, 2)).astype(np.float32))
    result = kmeans(points, 5, seed=3)
    assert sorted(torch.bincount(result.labels).tolist()) == [50] * 5


def test_numpy_and_torch_layouts_give_the_same_labels():
    image = generate_scene(2, size=24).image
    from_numpy = kmeans_xyrgb(image, 5)
    from_torch = kmeans_xyrgb(torch.from_numpy(image).permute(2, 0, 1), 5)
    assert isinstance(from_numpy, np.ndarray) and isinstance(from_torch, torch.Tensor)
    assert from_numpy.dtype == np.int64 and from_torch.dtype == torch.int64
    np.testing.assert_array_equal(from_numpy, from_torch.numpy())


def test_labels_are_contiguous_in_order_of_first_appearance_and_seeded():
    image = generate_scene(3, size=20).image
    labels = kmeans_xyrgb(image, 6, seed=5)
    first_seen = list(dict.fromkeys(labels.ravel().tolist()))
    assert first_seen == list(range(len(first_seen))) and len(first_seen) <= 6
    np.testing.assert_array_equal(labels, kmeans_xyrgb(image, 6, seed=5))


def test_module_clusters_each_image_like_the_function():
    images = torch.stack([torch.from_numpy(generate_scene(i, size=16).image).permute(2, 0, 1) for i in range(2)])
    module = KMeansXYRGB(4, spatial_weight=0.5)
    out = module(images)
    assert out.shape == (2, 16, 16)
    for image, labels in zip(images, out):
        assert torch.equal(labels, kmeans_xyrgb(image, 4, spatial_weight=0.5))


def test_relabel_sequential():
    np.testing.assert_array_equal(relabel_sequential(np.array([[5, 2], [5, 9]])), [[0, 1], [0, 2]])
    assert relabel_sequential(torch.tensor([3, 3, 1])).tolist() == [0, 0, 1]


@pytest.mark.parametrize("rows", [1, 2, 5, 8])
def test_tournament_argmin_matches_argmin_with_ties(rows):
    values = torch.randint(0, 3, (rows, 1000)).float()  # many ties: the lowest row must win
    assert torch.equal(_argmin_dim0(values), values.argmin(0))


@pytest.mark.parametrize(
    "image, k, message",
    [
        (np.zeros((3, 3, 3), np.uint8), 10, r"k must be an integer in \[1, H\*W\] = \[1, 9\]"),
        (np.zeros((3, 3, 3), np.uint8), 0, "k must be"),
        (np.zeros((4, 4, 3), np.float32), 2, "expected an H x W x 3 uint8 RGB array, got shape .* float32"),
        (np.zeros((4, 4), np.uint8), 2, r"got shape \(4, 4\)"),
        (np.zeros((4, 4, 4), np.uint8), 2, r"got shape \(4, 4, 4\)"),
        (torch.zeros(4, 5, 3, dtype=torch.uint8), 2, r"3 x H x W uint8 RGB tensor.*permute\(2, 0, 1\)"),
    ],
)
def test_bad_input_is_a_clear_error(image, k, message):
    with pytest.raises(ValueError, match=message):
        kmeans_xyrgb(image, k)


def test_bad_spatial_weight_is_a_clear_error():
    with pytest.raises(ValueError, match="spatial_weight must be a finite number >= 0, got -1"):
        kmeans_xyrgb(np.zeros((2, 2, 3), np.uint8), 2, spatial_weight=-1)
