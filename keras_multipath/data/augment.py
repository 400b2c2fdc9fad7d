"""Per-example preprocessing and data augmentation, with stateless seeds.

Every random step takes a `[2]` int seed tensor, so the same seed gives the same output on
every run and in any `tf.data` parallelism.

Augmentation hyperparameters ("ds_hparams") and their defaults (no augmentation):

| key | default | meaning |
|---|---|---|
| ds_quality_delta | 0.0 | JPEG re-encoding at a random quality in [100 (1 - delta), 100] |
| ds_area_range_min | 1.0 | random crop with area in [value, 1] of the image (1.0: no crop) |
| ds_aspect_ratio_range_min | 1.0 | crop aspect ratio in [value, 1 / value] |
| ds_flip_left_right | False | random horizontal flip with probability 0.5 |
| ds_brightness_delta | 0.0 | add a uniform offset in [-delta, delta] to pixels on [0, 1] |
| ds_contrast_delta | 0.0 | scale contrast by a factor in [1 - delta, 1 + delta] |
| ds_saturation_delta | 0.0 | scale saturation by a factor in [1 - delta, 1 + delta] |
| ds_hue_delta | 0.0 | rotate hue by a uniform offset in [-delta, delta] turns (delta <= 0.5) |
| ds_image_size | None | output resolution: an int, or a list of ints for several resolutions |

The colour steps run on float pixels in [0, 1] and the result is clipped to [0, 1]. The
reference µ4Net pipeline applied them to float values in 0..255. There a brightness offset of
at most 0.2 changes a pixel by under 0.1 % of its range, so it has no visible effect. On the
[0, 1] scale, which is the float convention of the TensorFlow image ops, the same delta moves
pixels by up to 20 % of the range. Contrast, saturation and hue are scale-invariant, so they
match the reference.
"""

import numbers

import tensorflow as tf

DS_HPARAM_DEFAULTS = {
    "ds_quality_delta": 0.0,
    "ds_area_range_min": 1.0,
    "ds_aspect_ratio_range_min": 1.0,
    "ds_flip_left_right": False,
    "ds_brightness_delta": 0.0,
    "ds_contrast_delta": 0.0,
    "ds_saturation_delta": 0.0,
    "ds_hue_delta": 0.0,
    "ds_image_size": None,
}

_NUM_SEEDS = 7


def resolve_ds_hparams(ds_hparams=None):
    """Validate `ds_hparams` and fill in defaults for missing keys.

    Keys that do not start with "ds_" are ignored, so a path's full hyperparameter dict can be
    passed as is.

    Raises:
        ValueError: for an unknown "ds_" key or a value outside its range.
    """
    resolved = dict(DS_HPARAM_DEFAULTS)
    for key, value in (ds_hparams or {}).items():
        if not key.startswith("ds_"):
            continue
        if key not in DS_HPARAM_DEFAULTS:
            raise ValueError(f"Unknown ds_hparams key '{key}'. Known keys: {', '.join(DS_HPARAM_DEFAULTS)}")
        resolved[key] = value

    for key in ("ds_quality_delta", "ds_brightness_delta", "ds_contrast_delta", "ds_saturation_delta"):
        _check_range(key, resolved[key], 0.0, 1.0)
    _check_range("ds_hue_delta", resolved["ds_hue_delta"], 0.0, 0.5)
    for key in ("ds_area_range_min", "ds_aspect_ratio_range_min"):
        value = resolved[key]
        if not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
            raise ValueError(f"Expected {key} in (0, 1]. Received: {key}={value!r}")
    if not isinstance(resolved["ds_flip_left_right"], bool):
        raise ValueError(
            f"Expected a bool ds_flip_left_right. Received: {resolved['ds_flip_left_right']!r}"
        )
    return resolved


def _check_range(key, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        raise ValueError(f"Expected {key} in [{low}, {high}]. Received: {key}={value!r}")


def to_rgb(image):
    """Repeat a 1-channel image to 3 channels; leave a 3-channel image unchanged."""
    if image.shape[-1] == 1:
        return tf.image.grayscale_to_rgb(image)
    return image


def random_jpeg_quality(image, delta, seed):
    """Re-encode a uint8 image as JPEG with a random quality in [100 (1 - delta), 100]."""
    min_quality = int(100 * (1.0 - delta))
    if min_quality >= 100:
        return image
    return tf.image.stateless_random_jpeg_quality(image, min_quality, 100, seed)


def random_crop(image, area_min, aspect_ratio_min, seed):
    """Crop a random box with area in [area_min, 1] of the image and aspect in [r, 1/r].

    The box is drawn with `sample_distorted_bounding_box` over the whole image; when it finds
    no box within its 100 attempts it returns the whole image.
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.zeros([1, 0, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(aspect_ratio_min, 1.0 / aspect_ratio_min),
        area_range=(area_min, 1.0),
        max_attempts=100,
        use_image_if_no_bounding_boxes=True,
    )
    return tf.slice(image, begin, size)


def color_jitter(image, hparams, seeds):
    """Apply random brightness, contrast, saturation and hue to a float RGB image on [0, 1].

    Returns the image clipped to [0, 1]. `seeds` is a (4, 2) tensor of stateless seeds.
    """
    if hparams["ds_brightness_delta"] > 0:
        image = tf.image.stateless_random_brightness(image, hparams["ds_brightness_delta"], seeds[0])
    if hparams["ds_contrast_delta"] > 0:
        delta = hparams["ds_contrast_delta"]
        image = tf.image.stateless_random_contrast(image, 1.0 - delta, 1.0 + delta, seeds[1])
    if hparams["ds_saturation_delta"] > 0:
        delta = hparams["ds_saturation_delta"]
        image = tf.image.stateless_random_saturation(image, 1.0 - delta, 1.0 + delta, seeds[2])
    if hparams["ds_hue_delta"] > 0:
        image = tf.image.stateless_random_hue(image, hparams["ds_hue_delta"], seeds[3])
    return tf.clip_by_value(image, 0.0, 1.0)


def preprocess_image(image, image_sizes, hparams, training, seed=None):
    """Turn one uint8 image (H, W, C) into float32 RGB images on [-1, 1] at each size.

    The steps run in this order:
    1. (training) random JPEG quality.
    2. Grayscale to RGB, then scale to [0, 1].
    3. (training) random crop, horizontal flip and colour jitter.
    4. Bilinear resize to each size, then map to [-1, 1] and clip.

    Args:
        image: uint8 tensor (H, W, 1) or (H, W, 3).
        image_sizes: list of int output sizes (square images).
        hparams: ds_hparams as returned by `resolve_ds_hparams`.
        training: whether to apply the random augmentations.
        seed: int32 or int64 tensor of shape [2]; required when `training` is True.

    Returns:
        A list of float32 tensors (size, size, 3), one per entry of `image_sizes`.
    """
    if training:
        seeds = tf.random.experimental.stateless_split(seed, num=_NUM_SEEDS)
        if hparams["ds_quality_delta"] > 0:
            image = random_jpeg_quality(image, hparams["ds_quality_delta"], seeds[0])
    image = to_rgb(image)
    image = tf.cast(image, tf.float32) / 255.0

    if training:
        if hparams["ds_area_range_min"] < 1.0:
            image = random_crop(image, hparams["ds_area_range_min"], hparams["ds_aspect_ratio_range_min"], seeds[1])
        if hparams["ds_flip_left_right"]:
            image = tf.image.stateless_random_flip_left_right(image, seeds[2])
        image = color_jitter(image, hparams, seeds[3:7])

    outputs = []
    for size in image_sizes:
        resized = tf.image.resize(image, (size, size), method="bilinear")
        outputs.append(tf.clip_by_value(resized * 2.0 - 1.0, -1.0, 1.0))
    return outputs
