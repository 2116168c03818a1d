"""Run-mode switch, pictures, widgets and the statistics of Chapter 1's face notebook."""

import numpy as np
import pytest

from common import config, viz, widgets, ch01


def test_hparams_follow_the_mode(monkeypatch):
    full = dict(epochs=50, batch_size=64)
    monkeypatch.setenv(config.ENV_VAR, "1")
    assert config.hparams(full, dict(epochs=1)).epochs == 1
    monkeypatch.setenv(config.ENV_VAR, "0")
    hp = config.hparams(full, dict(epochs=1))
    assert hp.epochs == 50 and hp["batch_size"] == 64 and dict(hp) == full
    with pytest.raises(KeyError):
        config.hparams(full, dict(epoch=1))


def test_grid_array_layout_and_ranges():
    imgs = np.stack([np.full((4, 5, 3), v, np.float32) for v in (-1.0, 0.0, 1.0)])
    grid = viz.grid_array(imgs, rows=1, pad=1)
    assert grid.shape == (6, 3 * 6 + 1, 3)
    assert grid[1, 1, 0] == 0.0 and abs(grid[1, 7, 0] - 0.5) < 1e-6 and grid[1, 13, 0] == 1.0
    assert viz.to_unit_range(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]


def test_png_bytes_are_a_png():
    png = viz.to_png_bytes(np.zeros((3, 3)), scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def faces():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 6, 5, 3), dtype=np.uint8)
    attributes = {
        "Male": np.arange(30) % 2 == 0,
        "Smiling": np.arange(30) % 3 == 0,
        "Bald": np.zeros(30, bool),
    }
    return images, attributes


def test_conditional_face_mean_median_and_counts(faces):
    images, attributes = faces
    face, count = ch01.conditional_face(images, attributes, {})
    assert count == 30
    np.testing.assert_array_equal(face, np.rint(images.mean(0)).astype(np.uint8))
    face, count = ch01.conditional_face(images, attributes, {"Male": True, "Smiling": True})
    idx = np.arange(30)[(np.arange(30) % 6) == 0]
    assert count == len(idx) == 5
    np.testing.assert_array_equal(face, np.rint(images[idx].mean(0)).astype(np.uint8))
    face, _ = ch01.conditional_face(images, attributes, {"Male": False}, stat="median")
    np.testing.assert_array_equal(face, np.rint(np.median(images[1::2], 0)).astype(np.uint8))
    assert ch01.conditional_face(images, attributes, {"Bald": True}) == (None, 0)


def test_pixelwise_random_sample_copies_pixels(faces):
    images, _ = faces
    out = ch01.pixelwise_random_sample(images, rng=1)
    assert out.shape == images.shape[1:]
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            assert (images[:, i, j] == out[i, j]).all(-1).any()
    assert not any((out == img).all() for img in images)


def test_face_explorer_toggles_change_the_picture(faces):
    images, attributes = faces
    explorer = widgets.conditional_face_explorer(images, attributes, ch01.conditional_face)
    first = explorer.image.value
    assert explorer.current is not None and "30 images" in explorer.message.value
    explorer.toggles["Male"].value = "True"
    assert explorer.image.value != first and "15 images" in explorer.message.value
    explorer.stat.value = "median"
    assert "median of 15" in explorer.message.value
    explorer.toggles["Bald"].value = "True"
    assert explorer.current is None and "No image matches" in explorer.message.value


def test_step_browser_slider_changes_the_picture():
    frames = [np.full((4, 4), v, np.float32) for v in (0.0, 0.5, 1.0)]
    browser = widgets.step_browser(frames)
    last = browser.image.value
    browser.slider.value = 0
    assert browser.image.value != last and browser.current is frames[0]


def test_plot_history_survives_an_empty_history():
    import matplotlib.pyplot as plt

    ax = viz.plot_history({"loss": [0.5, 0.4], "val_loss": []})
    assert len(ax.lines) == 1
    ax = viz.plot_history({})
    assert len(ax.lines) == 0 and "no epochs" in ax.texts[0].get_text()
    plt.close("all")


def test_strategy_and_precision_fall_back_on_a_cpu():
    import keras
    import tensorflow as tf

    strategy = config.distribution_strategy()
    if len(tf.config.list_logical_devices("GPU")) < 2:
        assert strategy.num_replicas_in_sync == 1
    try:
        expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
        assert config.use_mixed_precision(True) == expected
        assert keras.mixed_precision.global_policy().name == expected
    finally:
        keras.mixed_precision.set_global_policy("float32")
