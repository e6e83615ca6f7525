"""Small reusable blocks for the model zoo."""

from pixelwise.layers.conv import Activation, conv_bn_act, conv_stack, relu, same_padding

__all__ = ["Activation", "conv_bn_act", "conv_stack", "relu", "same_padding"]
