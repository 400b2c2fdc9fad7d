"""Score of a path (validation quality with size and compute penalties) and a FLOP count.

    score = quality * s ** (accounted_params / base_accounted_params)
                    * s ** (flops / base_flops)

With the reference constants (s = 0.99, 2.2e9 parameters, 3.8e12 FLOPs) a fully cloned
ViT-L/16 loses about 0.14 % and a ViT-L/16 forward pass at 384 px about 0.1 %, so the
penalties break ties in favour of shared components and smaller models.
"""

import dataclasses
import math

SCALE_FACTOR = 0.99
BASE_ACCOUNTED_PARAMS = 2.2e9
BASE_FLOPS = 3.8e12

# FLOPs per element of the element-wise steps, counted as XLA's cost analysis roughly does:
# LayerNorm (mean, variance, normalise, scale, shift), softmax (max, exp, sum, divide) and
# the erf GELU. Only the order of magnitude matters for the penalty.
LAYER_NORM_FLOPS_PER_ELEMENT = 8
SOFTMAX_FLOPS_PER_ELEMENT = 5
GELU_FLOPS_PER_ELEMENT = 8


@dataclasses.dataclass(frozen=True)
class Scorer:
    """Compute the reward of a path from its quality, accounted parameters and FLOPs.

    Args:
        scale_factor: penalty base `s` in (0, 1]; 1.0 disables both penalties.
        base_accounted_params: accounted parameters that cost one factor `s`.
        base_flops: forward-pass FLOPs that cost one factor `s`.

    Example:

    >>> Scorer().score(0.9, accounted_params=0, flops=0)
    0.9
    """

    scale_factor: float = SCALE_FACTOR
    base_accounted_params: float = BASE_ACCOUNTED_PARAMS
    base_flops: float = BASE_FLOPS

    def __post_init__(self):
        if not 0.0 < self.scale_factor <= 1.0:
            raise ValueError(
                f"Expected 0 < scale_factor <= 1. Received: scale_factor={self.scale_factor}"
            )
        for name in ("base_accounted_params", "base_flops"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"Expected {name} > 0. Received: {name}={getattr(self, name)}"
                )

    def score(self, quality, accounted_params, flops):
        """Return `quality` times the size and compute penalties."""
        if quality is None or not math.isfinite(quality):
            return float("-inf")
        size_penalty = self.scale_factor ** (accounted_params / self.base_accounted_params)
        compute_penalty = self.scale_factor ** (flops / self.base_flops)
        return float(quality * size_penalty * compute_penalty)

    def get_config(self):
        return dataclasses.asdict(self)


def _pair(value, name):
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"Expected {name} as an int or a pair. Received: {name}={value}")
        return int(value[0]), int(value[1])
    return int(value), int(value)


def vit_forward_flops(
    image_size, patch_size, hidden_dim, num_heads, mlp_dim, num_layers, num_classes=0
):
    """Count the FLOPs of one ViT forward pass at batch size 1.

    A multiply-add counts as 2 FLOPs. The count covers the patch convolution with its bias
    and the position-embedding addition. Per encoder block it covers the two LayerNorms, the
    query, key, value and output projections, the attention scores with their scaling and
    softmax, the weighted sum of values, the MLP with its GELU and both residual additions.
    Then come the final LayerNorm over all tokens and the head.

    Args:
        image_size: int or (height, width) in pixels.
        patch_size: patch side in pixels.
        hidden_dim: token width D.
        num_heads: attention heads.
        mlp_dim: MLP hidden width.
        num_layers: number of encoder blocks (0 allowed).
        num_classes: head outputs; 0 for a headless path.

    Returns:
        int, the FLOP count.
    """
    height, width = _pair(image_size, "image_size")
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}x{width} is not a multiple of the patch size {patch_size}."
        )
    patches = (height // patch_size) * (width // patch_size)
    tokens = patches + 1
    d, m, t = hidden_dim, mlp_dim, tokens

    embedding = 2 * patches * patch_size * patch_size * 3 * d + patches * d + t * d
    attention = (
        4 * (2 * t * d * d + t * d)  # query, key, value and output projections with biases
        + 2 * 2 * t * t * d  # scores and weighted sum of values
        + num_heads * t * t * (1 + SOFTMAX_FLOPS_PER_ELEMENT)  # scaling and softmax
    )
    mlp = 2 * t * d * m + t * m + GELU_FLOPS_PER_ELEMENT * t * m + 2 * t * m * d + t * d
    block = 2 * LAYER_NORM_FLOPS_PER_ELEMENT * t * d + attention + mlp + 2 * t * d
    final_norm = LAYER_NORM_FLOPS_PER_ELEMENT * t * d
    head = 2 * d * num_classes + num_classes if num_classes else 0
    return int(embedding + num_layers * block + final_norm + head)
