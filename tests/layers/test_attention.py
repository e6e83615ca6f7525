"""Attention blocks (pixelwise/layers/attention.py): DANet's channel self-attention, hand-computed, and
the multi-scale spatial attention's pooled branches and per-pixel scale weights."""

import math

import pytest
import torch

from pixelwise.layers.attention import ChannelSelfAttention, MultiScaleSpatialAttention


def test_channel_self_attention_by_hand():
    # two channels over 2 pixels, orthonormal: energy A A^T = I, so each row of the softmax is
    # (e, 1) / (e + 1) with the diagonal first
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    block = ChannelSelfAttention()
    own, other = math.e / (math.e + 1), 1 / (math.e + 1)
    torch.testing.assert_close(block.attention(x)[0], torch.tensor([[own, other], [other, own]]))
    with torch.no_grad():
        block.gamma.fill_(0.5)
    expected = x.reshape(2, 2) + 0.5 * torch.tensor([[own, other], [other, own]])  # x + gamma * X A
    torch.testing.assert_close(block(x), expected.reshape(1, 2, 1, 2))


def test_channel_self_attention_starts_as_identity_and_learns_gamma():
    block = ChannelSelfAttention()
    x = torch.randn(2, 3, 4, 5)
    out = block(x)
    assert torch.equal(out, x) and block.gamma.item() == 0.0
    out.square().sum().backward()
    assert block.gamma.grad.abs().item() > 0
    assert sum(p.numel() for p in block.parameters()) == 1


def test_spatial_attention_branches_run_at_the_pooled_scales():
    block = MultiScaleSpatialAttention(4, scales=(1, 2, 4)).eval()
    sizes = []
    for branch in block.branches:
        branch.register_forward_hook(lambda module, inputs, output: sizes.append(tuple(inputs[0].shape[-2:])))
    with torch.no_grad():
        out = block(torch.randn(1, 4, 9, 10))
    assert out.shape == (1, 4, 9, 10)
    assert sizes == [(9, 10), (5, 5), (3, 3)]  # ceil_mode: odd sides are pooled too


def test_spatial_attention_adds_the_weighted_contexts_to_its_input():
    block = MultiScaleSpatialAttention(3, scales=(2, 4)).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        for score in block.scores:  # equal scores: each scale weighs 1/2 everywhere
            score.weight.zero_()
            score.bias.zero_()
        torch.testing.assert_close(block.scale_weights(x), torch.full((2, 2, 8, 8), 0.5))
        contexts = [torch.nn.functional.interpolate(branch(torch.nn.functional.avg_pool2d(x, s)), size=(8, 8),
                                                    mode="bilinear", align_corners=False)
                    for s, branch in zip(block.scales, block.branches)]
        torch.testing.assert_close(block(x), x + 0.5 * (contexts[0] + contexts[1]))


def test_spatial_attention_weights_are_a_softmax_over_scales_per_pixel():
    block = MultiScaleSpatialAttention(4, scales=(2, 4, 8)).eval()
    with torch.no_grad():
        weights = block.scale_weights(torch.randn(2, 4, 16, 24))
    assert weights.shape == (2, 3, 16, 24) and weights.gt(0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 16, 24))


def test_spatial_attention_rejects_bad_scales():
    with pytest.raises(ValueError, match="pooling factors"):
        MultiScaleSpatialAttention(4, scales=())
    with pytest.raises(ValueError, match="pooling factors"):
        MultiScaleSpatialAttention(4, scales=(2, 0))
