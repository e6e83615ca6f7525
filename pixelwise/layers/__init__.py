"""Small reusable blocks for the model zoo."""

from pixelwise.layers.attention import ChannelSelfAttention, MultiScaleSpatialAttention
from pixelwise.layers.conv import (
    Activation,
    bn_act_conv,
    conv2d,
    conv_bn_act,
    conv_stack,
    relu,
    same_padding,
    separable_conv_bn_act,
)
from pixelwise.layers.dilated import (
    DILATED_CONV_KINDS,
    GriddingStats,
    LayerSpec,
    PreConvDilatedConv2d,
    SharedSeparableConv2d,
    SmoothedDilatedConv2d,
    dilated_conv,
    effective_receptive_field,
    gridding_score,
    gridding_stats,
    hdc_max_distances,
    influence_map,
    make_dilated_conv,
    periodicity_score,
    phase_occupancy,
    receptive_field_mask,
    satisfies_hdc,
)
from pixelwise.layers.upsampling import (
    UPSAMPLER_KINDS,
    BedOfNails,
    BilinearTransposedConv2d,
    Interpolate,
    MaxPoolWithIndices,
    MaxUnpool,
    PixelShuffleUpsample,
    PooledWithIndices,
    ResizeConv2d,
    bed_of_nails,
    bilinear_kernel,
    bilinear_kernel_size,
    bilinear_upsample,
    checkerboard_score,
    icnr_,
    make_upsampler,
    nearest_upsample,
    phase_means,
    transposed_conv,
)

__all__ = [
    "Activation", "bn_act_conv", "conv2d", "conv_bn_act", "conv_stack", "relu", "same_padding", "separable_conv_bn_act",
    # attention
    "ChannelSelfAttention", "MultiScaleSpatialAttention",
    # dilated convolution and gridding
    "DILATED_CONV_KINDS", "GriddingStats", "LayerSpec", "PreConvDilatedConv2d", "SharedSeparableConv2d",
    "SmoothedDilatedConv2d", "dilated_conv", "effective_receptive_field", "gridding_score", "gridding_stats",
    "hdc_max_distances", "influence_map", "make_dilated_conv", "periodicity_score", "phase_occupancy",
    "receptive_field_mask", "satisfies_hdc",
    # upsampling
    "UPSAMPLER_KINDS", "BedOfNails", "BilinearTransposedConv2d", "Interpolate", "MaxPoolWithIndices", "MaxUnpool",
    "PixelShuffleUpsample", "PooledWithIndices", "ResizeConv2d", "bed_of_nails", "bilinear_kernel",
    "bilinear_kernel_size", "bilinear_upsample", "checkerboard_score", "icnr_", "make_upsampler",
    "nearest_upsample", "phase_means", "transposed_conv",
]
