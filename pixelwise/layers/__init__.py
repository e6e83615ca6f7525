"""Small reusable blocks for the model zoo."""

from pixelwise.layers.conv import Activation, conv_bn_act, conv_stack, relu, same_padding
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
    "Activation", "conv_bn_act", "conv_stack", "relu", "same_padding",
    # upsampling
    "UPSAMPLER_KINDS", "BedOfNails", "BilinearTransposedConv2d", "Interpolate", "MaxPoolWithIndices", "MaxUnpool",
    "PixelShuffleUpsample", "PooledWithIndices", "ResizeConv2d", "bed_of_nails", "bilinear_kernel",
    "bilinear_kernel_size", "bilinear_upsample", "checkerboard_score", "icnr_", "make_upsampler",
    "nearest_upsample", "phase_means", "transposed_conv",
]
