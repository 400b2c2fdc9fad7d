"""Named Vision Transformer sizes and their parameter counts."""

VIT_VARIANTS = {
    # The four sizes of the original ViT family (Dosovitskiy et al., 2021).
    "Ti/16": dict(hidden_dim=192, num_heads=3, mlp_dim=768, num_layers=12, patch_size=16),
    "S/16": dict(hidden_dim=384, num_heads=6, mlp_dim=1536, num_layers=12, patch_size=16),
    "B/16": dict(hidden_dim=768, num_heads=12, mlp_dim=3072, num_layers=12, patch_size=16),
    "L/16": dict(hidden_dim=1024, num_heads=16, mlp_dim=4096, num_layers=24, patch_size=16),
    # Small sizes for CPU tests and examples on 8-32 px images.
    "tiny/4": dict(hidden_dim=64, num_heads=2, mlp_dim=128, num_layers=4, patch_size=4),
    "micro/4": dict(hidden_dim=32, num_heads=2, mlp_dim=64, num_layers=2, patch_size=4),
}

_VARIANT_KEYS = ("hidden_dim", "num_heads", "mlp_dim", "num_layers", "patch_size")


def get_variant(variant):
    """Look up a ViT size by name, or validate a size given as a dict.

    Args:
        variant: a key of `VIT_VARIANTS` such as `"B/16"`, or a dict with the integer keys
            `hidden_dim`, `num_heads`, `mlp_dim`, `num_layers` and `patch_size`.

    Returns:
        A new dict with those five keys, safe to modify.

    Raises:
        ValueError: for an unknown name, a missing key, or a hidden size that the number of
            heads does not divide.
    """
    if isinstance(variant, str):
        if variant not in VIT_VARIANTS:
            known = ", ".join(VIT_VARIANTS)
            raise ValueError(f"Unknown ViT variant '{variant}'. Known variants: {known}.")
        return dict(VIT_VARIANTS[variant])
    if not isinstance(variant, dict):
        raise TypeError(
            "Expected `variant` to be a variant name or a dict, "
            f"Received: variant={variant!r} of type {type(variant).__name__}"
        )
    missing = [key for key in _VARIANT_KEYS if key not in variant]
    if missing:
        raise ValueError(
            f"Expected a variant dict with keys {', '.join(_VARIANT_KEYS)}. "
            f"Missing: {', '.join(missing)}. Received: variant={variant}"
        )
    result = {key: int(variant[key]) for key in _VARIANT_KEYS}
    if result["hidden_dim"] % result["num_heads"]:
        raise ValueError(
            "Expected `hidden_dim` to be divisible by `num_heads`. Received: "
            f"hidden_dim={result['hidden_dim']}, num_heads={result['num_heads']}"
        )
    return result


def count_vit_params(variant, image_size, num_classes=0, num_layers=None):
    """Count the weights of a ViT built by `make_vit_components`, without building it.

    Args:
        variant: a variant name or dict, as accepted by `get_variant`.
        image_size: an int for square images, or `(height, width)` in pixels.
        num_classes: classes of the head; 0 means headless.
        num_layers: encoder blocks; `None` uses the variant's depth.

    Returns:
        The number of scalar parameters as an int. For example ViT-L/16 headless has
        303,301,632 at 224 px and 303,690,752 at 384 px.
    """
    size = get_variant(variant)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    depth = size["num_layers"] if num_layers is None else num_layers
    d, m, p = size["hidden_dim"], size["mlp_dim"], size["patch_size"]
    num_patches = (height // p) * (width // p)

    embedding = p * p * 3 * d + d
    class_token = d
    position_embedding = (1 + num_patches) * d
    # Query, key, value and output projections, two LayerNorms and the two MLP layers.
    block = 4 * (d * d + d) + 2 * 2 * d + (d * m + m) + (m * d + d)
    encoder_norm = 2 * d
    head = (d * num_classes + num_classes) if num_classes else 0
    return embedding + class_token + position_embedding + depth * block + encoder_norm + head
