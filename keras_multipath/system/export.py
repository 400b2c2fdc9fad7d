"""Export of a path as a standalone `.keras` file, and the immutability check."""

import hashlib
import os

import numpy as np


class ImmutabilityError(RuntimeError):
    """Re-evaluating a published path did not reproduce its stored predictions or metric."""


def export_path(assembler, path, filepath):
    """Save `path`'s model as a standalone `.keras` file and return the model.

    The file contains the layer configs and weights, so `keras.saving.load_model(filepath)`
    loads it without the store. The process that loads it must import
    `keras_multipath.layers`, which registers the ViT layer classes.
    """
    filepath = str(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(
            f"Expected a file name ending in '.keras'. Received: filepath={filepath!r}"
        )
    directory = os.path.dirname(os.path.abspath(filepath))
    if "://" not in filepath and not os.path.isdir(directory):
        raise ValueError(
            f"The folder of filepath={filepath!r} does not exist. Create {directory!r} first."
        )
    model = assembler.build_model(path)
    model.save(filepath)
    return model


def prediction_digest(predictions):
    """Return the SHA-256 hex digest of `predictions` as contiguous float32 with its shape.

    Equal digests mean bit-identical predictions; store the digest in a path's metrics to
    check later that the path still predicts exactly the same.
    """
    array = np.ascontiguousarray(np.asarray(predictions, dtype=np.float32))
    digest = hashlib.sha256(repr(array.shape).encode("ascii"))
    digest.update(array.tobytes())
    return digest.hexdigest()


def check_immutability(
    assembler,
    path,
    images,
    labels=None,
    expected_digest=None,
    metric="test_quality",
    rtol=1e-3,
    batch_size=64,
):
    """Re-evaluate `path` on `images` and compare with what was stored when it was published.

    Args:
        assembler: the `Assembler` that builds the path's model.
        path: a published `Path`.
        images: numpy images (B, H, W, 3) at the path's resolution.
        labels: integer labels; when given, the accuracy must match `path.metrics[metric]`
            within relative tolerance `rtol`.
        expected_digest: a `prediction_digest` of the predictions at publish time; when
            given, the predictions must be bit-identical (same backend and batch size).
        metric: the metric that contains the stored accuracy on these images.
        rtol: relative tolerance of the accuracy comparison.
        batch_size: prediction batch size; use the one used at publish time.

    Returns:
        The predictions (numpy array).

    Raises:
        ImmutabilityError: naming the path, when a comparison fails.
        ValueError: when neither `labels` nor `expected_digest` is given.
    """
    if labels is None and expected_digest is None:
        raise ValueError(
            "Nothing to compare: pass labels (compared with the stored metric) and/or "
            "expected_digest (compared bit for bit)."
        )
    model = assembler.build_model(path)
    predictions = np.asarray(model.predict(images, batch_size=batch_size, verbose=0))
    if expected_digest is not None:
        actual = prediction_digest(predictions)
        if actual != expected_digest:
            raise ImmutabilityError(
                f"Path {path.key!r} predicts differently from when it was published: "
                f"prediction digest {actual} != stored {expected_digest}."
            )
    if labels is not None:
        if metric not in path.metrics:
            raise ValueError(
                f"Path {path.key!r} has no metric {metric!r}. Known metrics: "
                f"{sorted(path.metrics)}"
            )
        accuracy = float(np.mean(np.argmax(predictions, axis=-1) == np.asarray(labels)))
        stored = float(path.metrics[metric])
        if not np.isclose(accuracy, stored, rtol=rtol, atol=0.0):
            raise ImmutabilityError(
                f"Path {path.key!r} reaches {metric}={accuracy:.6f} on re-evaluation, "
                f"but {stored:.6f} was stored (relative tolerance {rtol})."
            )
    return predictions
