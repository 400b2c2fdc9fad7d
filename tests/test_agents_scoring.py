"""Tests of the path score and the analytic FLOP count."""

import math

import pytest

from keras_multipath.agents.scoring import Scorer, vit_forward_flops


def test_score_penalties():
    scorer = Scorer()
    assert scorer.score(0.9, 0, 0) == pytest.approx(0.9)
    assert scorer.score(1.0, 2.2e9, 0) == pytest.approx(0.99)
    assert scorer.score(1.0, 0, 3.8e12) == pytest.approx(0.99)
    assert scorer.score(0.5, 4.4e9, 3.8e12) == pytest.approx(0.5 * 0.99**3)


def test_score_constants_configurable():
    assert Scorer(scale_factor=1.0).score(0.7, 1e12, 1e15) == pytest.approx(0.7)
    assert Scorer(0.5, 10.0, 100.0).score(1.0, 10.0, 100.0) == pytest.approx(0.25)
    assert Scorer(0.5, 10.0, 100.0).get_config() == {
        "scale_factor": 0.5,
        "base_accounted_params": 10.0,
        "base_flops": 100.0,
    }


def test_score_non_finite_quality_is_minus_infinity():
    assert Scorer().score(float("nan"), 0, 0) == -math.inf


def test_scorer_rejects_bad_constants():
    with pytest.raises(ValueError, match="scale_factor=1.5"):
        Scorer(scale_factor=1.5)
    with pytest.raises(ValueError, match="base_flops=0"):
        Scorer(base_flops=0)


def test_flops_match_published_vit_sizes():
    # Published multiply-accumulate counts: ViT-B/16 at 224 px 17.6 G, ViT-Ti/16 1.26 G,
    # ViT-L/16 at 384 px about 191 G; one multiply-add is 2 FLOPs.
    assert vit_forward_flops(224, 16, 768, 12, 3072, 12, 1000) == pytest.approx(35.2e9, rel=0.03)
    assert vit_forward_flops(224, 16, 192, 3, 768, 12, 1000) == pytest.approx(2.52e9, rel=0.03)
    assert vit_forward_flops(384, 16, 1024, 16, 4096, 24) == pytest.approx(382e9, rel=0.03)


def test_flops_small_model_exact():
    # 8x8 image, patch 4: 4 patches, 5 tokens, D=2, 1 head, MLP 4, no blocks, 3 classes.
    patches, tokens, d = 4, 5, 2
    expected = 2 * patches * 16 * 3 * d + patches * d + tokens * d + 8 * tokens * d + 2 * d * 3 + 3
    assert vit_forward_flops(8, 4, 2, 1, 4, 0, 3) == expected


def test_flops_grow_with_depth_and_resolution():
    base = vit_forward_flops(32, 4, 32, 2, 64, 1)
    assert vit_forward_flops(32, 4, 32, 2, 64, 2) > base
    assert vit_forward_flops(64, 4, 32, 2, 64, 1) > 4 * base * 0.9
    assert vit_forward_flops((32, 64), 4, 32, 2, 64, 1) > base


def test_flops_reject_bad_image_size():
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        vit_forward_flops(100, 16, 32, 2, 64, 1)
