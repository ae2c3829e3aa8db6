"""Temperature scaling recovers a known temperature and never makes the NLL worse; ECE by hand."""

import numpy as np
import pytest

from loscat_hf.model.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)


def _synthetic(temperature: float, n: int = 3000, k: int = 12, seed: int = 0):
    """Labels drawn from softmax(z); the model reports z * T, i.e. it is over-confident by a factor T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, k))
    p = apply_temperature(z)
    u = rng.random(n)[:, None]
    labels = (p.cumsum(1) < u).sum(1).clip(0, k - 1)
    return z * temperature, labels


def test_fit_recovers_known_temperature_and_lowers_nll():
    logits, labels = _synthetic(2.5)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, abs=0.3)
    before = negative_log_likelihood(apply_temperature(logits), labels)
    after = negative_log_likelihood(apply_temperature(logits, t), labels)
    assert after < before - 0.1
    assert expected_calibration_error(apply_temperature(logits, t), labels) < expected_calibration_error(
        apply_temperature(logits), labels)
    # an under-confident model gets T < 1
    logits, labels = _synthetic(0.5, seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("logits,labels", [
    (np.zeros((0, 3)), np.zeros(0, int)),               # no samples
    (np.ones((4, 1)), np.zeros(4, int)),                # one class
    (np.array([[np.nan, 1.0], [0.0, 1.0]]), [0, 1]),    # non-finite
    (np.eye(3) * 4, [0, 1, 2]),                         # no error: the optimum would be T -> 0
])
def test_degenerate_input_gives_no_scaling(logits, labels):
    assert fit_temperature(logits, labels) == 1.0


def test_labels_must_fit_the_logits():
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="rows"):
        fit_temperature(np.zeros((2, 3)), [0, 1, 2])


def test_apply_temperature_keeps_argmax_and_sums_to_one():
    z = np.random.default_rng(3).normal(0, 5, (50, 12))
    for t in (0.3, 1.0, 4.0):
        p = apply_temperature(z, t)
        assert np.allclose(p.sum(1), 1.0) and (p.argmax(1) == z.argmax(1)).all()
    assert np.allclose(apply_temperature(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])  # no overflow
    assert apply_temperature(z, 4.0).max(1).mean() < apply_temperature(z, 1.0).max(1).mean()


def test_ece_hand_computed():
    # 3 photos at confidence 0.95 (bin 14 of 15), 2 right: gap 0.95 - 2/3; 2 photos at 0.55 (bin 8), both
    # right: gap 0.45. ECE = 3/5 * 0.28333 + 2/5 * 0.45 = 0.35.
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.05, 0.95], [0.55, 0.45], [0.45, 0.55]])
    labels = np.array([0, 0, 0, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.35)
    bins = reliability_bins(probs, labels)
    assert len(bins) == 15 and [b["count"] for b in bins][8] == 2 and bins[14]["count"] == 3
    assert bins[14]["accuracy"] == pytest.approx(2 / 3) and bins[0]["accuracy"] is None
    # confidence 0.75 with 3 of 4 right is perfectly calibrated
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, [0, 0, 0, 1]) == pytest.approx(0.0)
    assert np.isnan(expected_calibration_error(np.zeros((0, 2)), np.zeros(0, int)))


def test_temperature_travels_in_config_json(tmp_path):
    from transformers import AutoConfig, ViTConfig

    from loscat_hf.model.folder import record_temperature, temperature

    config = ViTConfig(num_labels=3)
    assert temperature(config) == 1.0
    record_temperature(config, 2.5)
    config.save_pretrained(tmp_path)
    assert temperature(AutoConfig.from_pretrained(tmp_path)) == 2.5
    # the obvious name is a generation parameter to transformers 5.x: refused on save
    config.temperature = 2.5
    with pytest.raises(ValueError, match="temperature"):
        config.save_pretrained(tmp_path / "bad")
