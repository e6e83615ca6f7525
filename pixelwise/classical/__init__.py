"""Classical segmentation: clustering, superpixels and their evaluation; CRFs (grid, fully
connected, CRF-as-RNN) and the permutohedral lattice.

>>> from pixelwise.classical import dense_crf, grid_crf, CRFRNN, kmeans_xyrgb
"""

from pixelwise.classical.crf import CRFHooks, DenseCRF, GridCRF, crf_postprocess, dense_crf, grid_crf
from pixelwise.classical.crf_rnn import CRFRNN, CRFRNNModel, with_crf_rnn
from pixelwise.classical.permutohedral import PermutohedralLattice, permutohedral_filter

from pixelwise.classical.clustering import KMeansResult, KMeansXYRGB, kmeans, kmeans_xyrgb, xyrgb_features
from pixelwise.classical.evaluation import (
    ClusterEvaluator,
    boundary_recall,
    clusters_to_classes,
    evaluate_clusters,
    match_clusters,
    undersegmentation_error,
)
from pixelwise.classical.superpixels import (
    SEGMENTATION_METHODS,
    draw_boundaries,
    felzenszwalb,
    find_boundaries,
    mean_color_image,
    relabel_sequential,
    segment,
    slic,
)

__all__ = [
    "SEGMENTATION_METHODS",
    "ClusterEvaluator",
    "KMeansResult",
    "KMeansXYRGB",
    "boundary_recall",
    "clusters_to_classes",
    "draw_boundaries",
    "evaluate_clusters",
    "felzenszwalb",
    "find_boundaries",
    "kmeans",
    "kmeans_xyrgb",
    "match_clusters",
    "mean_color_image",
    "relabel_sequential",
    "segment",
    "slic",
    "undersegmentation_error",
    "xyrgb_features",
    "CRFHooks",
    "CRFRNN",
    "CRFRNNModel",
    "DenseCRF",
    "GridCRF",
    "PermutohedralLattice",
    "crf_postprocess",
    "dense_crf",
    "grid_crf",
    "permutohedral_filter",
    "with_crf_rnn",
]
