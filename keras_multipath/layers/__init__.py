"""Keras layers of keras_multipath: ViT components, router, connector and mixture."""

from keras_multipath.layers.connector import Connector
from keras_multipath.layers.mixture import MultipathMixture
from keras_multipath.layers.router import MultipathRouter
from keras_multipath.layers.variants import VIT_VARIANTS, count_vit_params, get_variant
from keras_multipath.layers.vit import (
    ClassToken,
    EncoderBlock,
    EncoderNorm,
    Head,
    PatchEmbedding,
    PositionEmbedding,
    apply_vit_components,
    layer_norm,
    make_vit_components,
    resample_position_embedding,
)

__all__ = [
    "ClassToken",
    "Connector",
    "EncoderBlock",
    "EncoderNorm",
    "Head",
    "MultipathMixture",
    "MultipathRouter",
    "PatchEmbedding",
    "PositionEmbedding",
    "VIT_VARIANTS",
    "apply_vit_components",
    "count_vit_params",
    "get_variant",
    "layer_norm",
    "make_vit_components",
    "resample_position_embedding",
]
