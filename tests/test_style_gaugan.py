"""Chapters 5-6: Gram matrix, AdaIN, SPADE, style losses, VGG extractor, GauGAN and their widgets."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from common import ch05, ch06, data
from common.ch05 import AdaIN, ReflectionConv2D
from common.ch06 import SPADE, SPADEResBlock
from common.ch06 import feature_matching_loss, hinge_d_loss, hinge_g_loss, perceptual_loss


@pytest.fixture(scope="module")
def vgg():
    # random weights (the tests run offline), the same ones whichever test asks first
    keras.utils.set_random_seed(0)
    return ch05.build_vgg19(weights=None)


# ------------------------------------------------------------------ Gram matrix and style losses

def test_gram_matrix_matches_definition(rng):
    f = rng.normal(size=(2, 5, 7, 4)).astype("float32")
    g = np.asarray(ch05.gram_matrix(f))
    assert g.shape == (2, 4, 4)
    np.testing.assert_allclose(g, np.transpose(g, (0, 2, 1)), atol=1e-6)
    for b in range(2):
        flat = f[b].reshape(-1, 4)  # (H*W, C)
        np.testing.assert_allclose(g[b], flat.T @ flat / 35.0, rtol=1e-5, atol=1e-5)


def test_total_variation_zero_for_constant_and_counts_steps():
    const = np.full((2, 8, 8, 3), 0.3, np.float32)
    assert float(ch05.total_variation_loss(const)) == pytest.approx(0.0, abs=1e-7)
    step = np.zeros((1, 4, 4, 1), np.float32)
    step[:, :, 2:] = 1.0  # one vertical edge of height 4 and size 1
    assert float(ch05.total_variation_loss(step)) == pytest.approx(4.0)


def test_style_losses_zero_on_identical_features_and_positive_otherwise(rng):
    a = [rng.normal(size=(1, 6, 6, 3)).astype("float32") for _ in range(2)]
    b = [x * 2.0 + 1.0 for x in a]
    assert float(ch05.style_loss_gram(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(ch05.style_loss_moments(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(ch05.content_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(ch05.style_loss_gram(a, b)) > 0
    assert float(ch05.style_loss_moments(a, b)) > 0
    # content loss: sum over (H, W, C) of squared differences, mean over layers
    expected = np.mean([np.sum((x - y) ** 2) for x, y in zip(a, b)])
    assert float(ch05.content_loss(a, b)) == pytest.approx(expected, rel=1e-5)


def test_vgg_preprocess_flips_once_and_subtracts_imagenet_means():
    red = np.zeros((1, 1, 1, 3), np.float32)
    red[..., 0] = 1.0
    out = np.asarray(ch05.vgg_preprocess(red))[0, 0, 0]
    np.testing.assert_allclose(out, [-103.939, -116.779, 255.0 - 123.68], atol=1e-3)
    ref = keras.applications.vgg19.preprocess_input(red * 255.0)
    np.testing.assert_allclose(out, np.asarray(ref)[0, 0, 0], atol=1e-3)


# ------------------------------------------------------------------ VGG19 feature extractor

def test_smoke_vgg_extractor_layer_shapes(vgg):
    assert vgg.count_params() == 20_024_384  # VGG19 without its classifier head
    assert not vgg.trainable_weights
    extractor = ch05.vgg_feature_extractor(ch05.STYLE_LAYERS, vgg=vgg)
    outs = extractor(np.zeros((2, 32, 32, 3), np.float32))
    assert [tuple(o.shape) for o in outs] == [
        (2, 32, 32, 64), (2, 16, 16, 128), (2, 8, 8, 256), (2, 4, 4, 512), (2, 2, 2, 512)]


def test_full_run_without_weights_raises_one_sentence(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(ch05.PretrainedWeightsUnavailableError, match="VGG19"):
        ch05.build_vgg19(weights="imagenet")


# ------------------------------------------------------------------ AdaIN

def test_adain_output_has_style_mean_and_std(rng):
    content = rng.normal(size=(2, 8, 8, 5)).astype("float32")
    style_feats = (rng.normal(size=(2, 6, 6, 5)) * rng.uniform(0.5, 3, (2, 1, 1, 5))
                   + rng.normal(size=(2, 1, 1, 5)) * 4).astype("float32")
    out = np.asarray(AdaIN(epsilon=0.0)([content, style_feats]))
    assert out.shape == content.shape
    np.testing.assert_allclose(out.mean(axis=(1, 2)), style_feats.mean(axis=(1, 2)), atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), style_feats.std(axis=(1, 2)), rtol=1e-4)
    # and it keeps the content's normalised layout
    norm = (content - content.mean((1, 2), keepdims=True)) / content.std((1, 2), keepdims=True)
    out_norm = (out - out.mean((1, 2), keepdims=True)) / out.std((1, 2), keepdims=True)
    np.testing.assert_allclose(out_norm, norm, atol=1e-3)


def test_reflection_conv_keeps_size_and_pads_by_reflection():
    layer = ReflectionConv2D(1, 3)
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    y = layer(x)
    assert tuple(y.shape) == (1, 3, 4, 1)
    padded = keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    assert float(padded[0, 0, 0, 0]) == float(x[0, 1, 1, 0])  # no zeros at the border


def test_adain_decoder_parameter_count_from_book_layer_list():
    assert ch05.build_adain_decoder().count_params() == 3_505_219


def test_adain_train_step_updates_only_decoder_and_alpha_zero_is_content_path(vgg):
    model = ch05.AdaINStyleTransfer(
        encoder=ch05.vgg_feature_extractor(ch05.ADAIN_LAYERS, vgg=vgg), width_divisor=16)
    model.compile()
    content = data.sample_image("astronaut", 32)[None]
    style_img = data.sample_image("coffee", 32)[None]
    enc_before = [w.numpy().copy() for w in model.encoder.weights]
    dec_before = [w.numpy().copy() for w in model.decoder.weights]
    logs = model.train_on_batch(content, style_img, return_dict=True)
    assert set(logs) == {"loss", "content_loss", "style_loss"}
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(enc_before, model.encoder.weights))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(dec_before, model.decoder.weights))
    out0 = np.asarray(model([content, style_img], alpha=0.0))
    out1 = np.asarray(model([content, style_img], alpha=1.0))
    assert out0.shape == (1, 32, 32, 3) and 0.0 <= out0.min() and out0.max() <= 1.0
    fc = model.encode(content)[-1]
    np.testing.assert_allclose(out0, np.asarray(model.decode(fc)), atol=1e-5)
    assert not np.allclose(out0, out1)


def test_neural_style_transfer_changes_image_and_lowers_loss(vgg):
    nst = ch05.NeuralStyleTransfer(vgg=vgg, learning_rate=0.05, style_weight=1e-3)
    content = data.sample_image("astronaut", 24)
    result, history = nst.stylize(content, data.sample_image("coffee", 24), steps=6)
    assert result.shape == (24, 24, 3) and 0.0 <= result.min() and result.max() <= 1.0
    assert not np.allclose(result, content)
    assert history["loss"][-1] < history["loss"][0]


# ------------------------------------------------------------------ SPADE

def test_spade_keeps_shape_and_modulation_follows_the_map(rng):
    layer = SPADE(6, hidden=8, norm="instance")
    x = rng.normal(size=(1, 16, 16, 6)).astype("float32")
    seg = np.zeros((1, 16, 16, 3), np.float32)
    seg[..., 0] = 1.0
    y0 = np.asarray(layer(x, seg))
    assert y0.shape == x.shape
    edited = seg.copy()
    edited[:, 4:8, 4:8] = [0.0, 1.0, 0.0]  # repaint one square as class 1
    y1 = np.asarray(layer(x, edited))
    changed = np.abs(y1 - y0).max(-1) > 1e-6
    # two stacked 3x3 convolutions reach two pixels beyond the edited square
    allowed = np.zeros((16, 16), bool)
    allowed[2:10, 2:10] = True
    assert changed[0, 4:8, 4:8].all()
    assert not changed[0][~allowed].any()
    gamma0, beta0 = layer.modulation(seg, (16, 16))
    gamma1, beta1 = layer.modulation(edited, (16, 16))
    assert np.allclose(np.asarray(gamma0)[0, 12:, 12:], np.asarray(gamma1)[0, 12:, 12:])
    assert not np.allclose(np.asarray(beta0)[0, 5, 5], np.asarray(beta1)[0, 5, 5])


def test_spade_batch_norm_uses_batch_statistics_and_resizes_the_map(rng):
    layer = SPADE(4, hidden=8)
    x = (rng.normal(size=(3, 8, 8, 4)) * 5 + 2).astype("float32")
    seg = np.zeros((3, 32, 32, 2), np.float32)  # map bigger than x: resized inside
    seg[..., 0] = 1.0
    gamma, beta = (np.asarray(t) for t in layer.modulation(seg, (8, 8)))
    y = np.asarray(layer(x, seg, training=True))
    normalized = (y - beta) / (1.0 + gamma)
    np.testing.assert_allclose(normalized.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(normalized.std(axis=(0, 1, 2)), 1.0, atol=1e-2)


def test_spade_resblock_shapes_and_learned_skip(rng):
    seg = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (2, 16, 16))]
    x = rng.normal(size=(2, 8, 8, 6)).astype("float32")
    changed = SPADEResBlock(4, 6, hidden=8)
    same = SPADEResBlock(6, 6, hidden=8)
    assert tuple(changed(x, seg).shape) == (2, 8, 8, 4) and changed.learned_skip
    assert tuple(same(x, seg).shape) == (2, 8, 8, 6) and not same.learned_skip


# ------------------------------------------------------------------ GauGAN losses and model

def test_hinge_feature_matching_and_perceptual_losses():
    assert float(hinge_d_loss([2.0, 3.0], [-2.0, -1.5])) == pytest.approx(0.0)
    assert float(hinge_d_loss([0.0], [0.0])) == pytest.approx(2.0)
    assert float(hinge_g_loss([1.0, 3.0])) == pytest.approx(-2.0)
    a = [np.ones((1, 2, 2, 1), np.float32), np.zeros((1, 1, 1, 2), np.float32)]
    b = [np.zeros((1, 2, 2, 1), np.float32), np.full((1, 1, 1, 2), 3.0, np.float32)]
    assert float(feature_matching_loss(a, b)) == pytest.approx(4.0)
    assert float(perceptual_loss(a, b, weights=[0.5, 2.0])) == pytest.approx(6.5)
    assert float(perceptual_loss(a, b, distance="l2")) == pytest.approx(10.0)


def test_palette_round_trip():
    palette = np.array([[0, 0, 255], [255, 0, 0], [0, 255, 0]], np.float32)
    labels = np.random.default_rng(0).integers(0, 3, (2, 8, 8))
    noisy = palette[labels] + np.random.default_rng(1).normal(0, 10, (2, 8, 8, 3))
    fitted = ch06.fit_palette(noisy, 3)
    recovered = np.asarray(ch06.colors_to_labels(noisy, fitted))
    # the same partition of pixels, whatever the order of the fitted colours
    mapping = {int(a): int(b) for a, b in zip(recovered.ravel(), labels.ravel())}
    assert len(set(mapping.values())) == 3
    assert np.array_equal(np.vectorize(mapping.get)(recovered), labels)
    assert np.asarray(ch06.colors_to_onehot(noisy, fitted)).shape == (2, 8, 8, 3)


@pytest.fixture(scope="module")
def small_gaugan(vgg):
    size, classes = 16, 4
    gen = ch06.build_gaugan_generator(size, classes, z_dim=8, base_filters=2, spade_hidden=4)
    enc = ch06.build_gaugan_encoder(size, 8, base_filters=2)
    disc = ch06.MultiScaleDiscriminator(size, classes, n_scales=2, base_filters=2)
    vgg_features = ch05.vgg_feature_extractor(ch05.STYLE_LAYERS, vgg=vgg)
    model = ch06.GauGAN(gen, disc, enc, vgg=vgg_features)
    model.compile()
    rng = np.random.default_rng(0)
    seg = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, (2, size, size))]
    img = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    return model, seg, img


def _snapshot(variables):
    return [np.array(v.numpy()) for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def test_gaugan_steps_change_only_intended_variables(small_gaugan):
    model, seg, img = small_gaugan
    g_vars, e_vars = model.generator.trainable_variables, model.encoder.trainable_variables
    d_vars, vgg_vars = model.discriminator.trainable_variables, model.vgg.weights
    snap = {k: _snapshot(v) for k, v in
            dict(g=g_vars, e=e_vars, d=d_vars, vgg=vgg_vars).items()}
    model.discriminator_step(seg, img)
    assert any(_changed(snap["d"], d_vars))
    assert not any(_changed(snap["g"], g_vars)) and not any(_changed(snap["e"], e_vars))
    snap["d"] = _snapshot(d_vars)
    logs = model.generator_step(seg, img)
    assert set(logs) == {"g_loss", "fm_loss", "vgg_loss", "kl_loss"}
    assert not any(_changed(snap["d"], d_vars))
    assert any(_changed(snap["g"], g_vars)) and any(_changed(snap["e"], e_vars))
    assert not any(_changed(snap["vgg"], vgg_vars))


def test_gaugan_fit_step_and_shapes(small_gaugan):
    model, seg, img = small_gaugan
    model.compile(run_eagerly=True)  # the same train_step, without minutes of graph tracing
    logs = model.train_on_batch(seg, img, return_dict=True)
    assert set(logs) == {"d_loss", "g_loss", "fm_loss", "vgg_loss", "kl_loss"}
    assert all(np.isfinite(v) for v in logs.values())
    out = np.asarray(model.generate(seg, style_images=img))
    assert out.shape == img.shape and np.abs(out).max() <= 1.0
    scales = model.discriminator([seg, img])
    # 16x16 input, three stride-2 blocks: 2x2 patches; the second scale sees 8x8: 1x1
    assert [tuple(o[-1].shape) for o in scales] == [(2, 2, 2, 1), (2, 1, 1, 1)]


def test_gaugan_generator_size_follows_book_layout():
    gen = ch06.build_gaugan_generator(32, 12, z_dim=256, base_filters=4, spade_hidden=8)
    assert gen.input_shape == [(None, 256), (None, 32, 32, 12)]
    assert gen.output_shape == (None, 32, 32, 3)
    dense = gen.get_layer("project")
    assert dense.units == 4 * 4 * 16 * 4  # book: Dense(16384) -> (4, 4, 1024) with base 64


def test_pix2pixhd_generator_runs_its_global_branch_at_half_size(rng):
    gen = ch06.build_pix2pixhd_generator(5, filters=2, n_down_global=2, n_blocks_global=1,
                                         n_blocks_local=1)
    seg = np.eye(5, dtype=np.float32)[rng.integers(0, 5, (2, 16, 16))]
    out = np.asarray(gen(seg))
    assert out.shape == (2, 16, 16, 3) and np.abs(out).max() <= 1.0
    image, features = gen.get_layer("global_generator")(seg[:, ::2, ::2])
    assert tuple(image.shape) == (2, 8, 8, 3) and tuple(features.shape) == (2, 8, 8, 4)


# ------------------------------------------------------------------ widgets

def test_style_strength_widget_redraws_on_alpha(vgg):
    from common.widgets import StyleStrengthExplorer

    model = ch05.AdaINStyleTransfer(
        encoder=ch05.vgg_feature_extractor(ch05.ADAIN_LAYERS, vgg=vgg), width_divisor=16)
    w = StyleStrengthExplorer(model, data.sample_image("astronaut", 16),
                              data.sample_image("coffee", 16), alpha=1.0)
    before, png = w.current.copy(), w.image.value
    w.slider.value = 0.0
    assert not np.allclose(before, w.current) and w.image.value != png


def test_latent_interpolator_widget_moves_between_endpoints():
    from common.widgets import LatentInterpolator

    gen = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16, activation="tanh"),
                            keras.layers.Reshape((4, 4, 1))])
    z0, z1 = np.zeros(3, np.float32), np.ones(3, np.float32)
    w = LatentInterpolator(gen, z0, z1)
    start = w.current.copy()
    w.slider.value = 1.0
    np.testing.assert_allclose(w.current, np.asarray(gen(z1[None]))[0], atol=1e-6)
    assert not np.allclose(start, w.current)


def test_gaugan_widget_seed_and_repaint_change_image(small_gaugan):
    from common.widgets import GauGANExplorer

    model, seg, _ = small_gaugan
    w = GauGANExplorer(model.generator, seg[0])
    first = w.current.copy()
    w.seed.value = 5
    second = w.current.copy()
    assert not np.allclose(first, second)
    w.source.value, w.target.value = 0, 1
    assert (w.edited_labels != 0).all()
    assert not np.allclose(second, w.current)


def test_gaugan_widget_brush_paints_a_cell_and_changes_image(small_gaugan):
    from common.widgets import GauGANExplorer

    model, seg, _ = small_gaugan
    w = GauGANExplorer(model.generator, seg[0], grid=4)  # 16x16 map: cells of 4x4 pixels
    before_labels, before_image = w.labels.copy(), w.current.copy()
    new_class = (int(before_labels[0, 0]) + 1) % seg.shape[-1]
    w.brush.value = new_class
    w.grid.cells[0].click()  # the top-left cell
    assert (w.labels[:4, :4] == new_class).all()
    np.testing.assert_array_equal(w.labels[4:], before_labels[4:])
    np.testing.assert_array_equal(w.labels[:, 4:], before_labels[:, 4:])
    assert not np.allclose(before_image, w.current)


# ------------------------------------------------------------------ iGAN: manifold projection

def test_interpolate_latents_endpoints_and_spacing():
    from common.ch06 import interpolate_latents

    path = interpolate_latents(np.zeros(3), np.full(3, 2.0), steps=5)
    assert path.shape == (5, 3)
    np.testing.assert_allclose(path[0], 0.0)
    np.testing.assert_allclose(path[-1], 2.0)
    np.testing.assert_allclose(np.diff(path[:, 0]), 0.5)


def test_projection_recovers_an_image_on_the_manifold_and_edits_respect_the_mask():
    from common.ch06 import project_to_latent

    gen = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, use_bias=False),
                            keras.layers.Reshape((4, 4, 1))])
    z_true = np.array([0.5, -1.0, 0.3, 0.8], np.float32)
    target = np.asarray(gen(z_true[None]))[0]
    z, image, losses = project_to_latent(gen, target, steps=300, learning_rate=0.05, restarts=2)
    assert losses[-1] < 1e-3 * max(losses[0], 1e-6) + 1e-5
    np.testing.assert_allclose(image, target, atol=2e-2)
    # an edit: only the top-left pixel is constrained, and a huge anchor weight pins z
    mask = np.zeros((4, 4, 1), np.float32)
    mask[0, 0] = 1.0
    edited_target = target.copy()
    edited_target[0, 0] += 1.0
    _, free_edit, _ = project_to_latent(gen, edited_target, mask=mask, z_init=z, steps=200)
    assert abs(free_edit[0, 0, 0] - edited_target[0, 0, 0]) < 1e-2  # the stroke is honoured
    z_pinned, _, _ = project_to_latent(gen, edited_target, mask=mask, z_init=z, anchor=z,
                                       anchor_weight=1e4, steps=20, learning_rate=1e-4)
    np.testing.assert_allclose(z_pinned, z, atol=5e-3)  # the smoothness term holds z in place


def test_stroke_target_stretches_coarse_cells_over_the_image():
    from common.ch06 import stroke_target

    image = np.zeros((8, 8, 3), np.float32)
    stroke = np.zeros((4, 4), bool)
    stroke[1, 2] = True  # cell (1, 2) covers rows 2-3, columns 4-5
    target, mask = stroke_target(image, stroke, color=[1.0, -1.0, 0.5])
    assert target.shape == mask.shape == image.shape
    assert mask.sum() == 4 * 3 and (mask[2:4, 4:6] == 1).all()
    np.testing.assert_allclose(target[2, 4], [1.0, -1.0, 0.5])
    np.testing.assert_array_equal(target[mask == 0], image[mask == 0])


def test_stroke_editor_pulls_the_image_towards_the_stroke():
    from common.widgets import StrokeEditor

    gen = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, use_bias=False),
                            keras.layers.Reshape((4, 4, 1))])
    z = np.array([0.5, -1.0, 0.3, 0.8], np.float32)
    w = StrokeEditor(gen, z, grid=2, steps=200, anchor_weight=1e-3)
    w.ink.value = 1.0
    w.grid.cells[0].click()  # paint the top-left 2x2 pixels
    assert w.stroke[0, 0] and w.stroke.sum() == 1
    png = w.image.value
    w.apply.click()
    before = np.abs(w.before[:2, :2] - 1.0).mean()
    after = np.abs(w.current[:2, :2] - 1.0).mean()
    assert after < 0.2 * before and w.image.value != png
    assert not np.allclose(w.z_edit, z)


# ------------------------------------------------------------------ mixed precision and bad input

def test_adain_mixed_precision_step_moves_the_decoder_like_float32(precision_check):
    """Keras' compile wraps the optimizer for loss scaling, which divides every gradient by the scale:
    the train step must back-propagate from that scale, or the decoder moves ~50,000x less."""
    content = data.sample_image("astronaut", 32)[None]
    style_img = data.sample_image("coffee", 32)[None]

    def step():
        encoder = ch05.vgg_feature_extractor(ch05.ADAIN_LAYERS, weights=None)
        model = ch05.AdaINStyleTransfer(encoder=encoder, width_divisor=16)
        model.compile(keras.optimizers.SGD(0.01))
        before = _snapshot(model.decoder.trainable_weights)
        logs = precision_check.until_applied(
            lambda: model.train_on_batch(content, style_img, return_dict=True), model.optimizer)
        return model, logs, before

    precision_check(step, lambda model: [model.decoder])


def test_adain_statistics_stay_finite_and_right_for_large_float16_activations(rng):
    """VGG's deep activations reach the thousands; in float16 (max 65,504) their squares overflow."""
    x = (rng.normal(size=(2, 8, 8, 4)) * 400 + 1000).astype("float16")
    mean, std = ch05.channel_moments(x)
    assert np.asarray(mean).dtype == np.asarray(std).dtype == np.float16
    exact = x.astype(np.float64)
    np.testing.assert_allclose(np.asarray(mean, np.float64)[:, 0, 0], exact.mean((1, 2)), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(std, np.float64)[:, 0, 0], exact.std((1, 2)), rtol=1e-3)
    normed = np.asarray(ch05.instance_normalize(x), np.float64)
    np.testing.assert_allclose(normed.mean((1, 2)), 0.0, atol=1e-2)
    np.testing.assert_allclose(normed.std((1, 2)), 1.0, atol=1e-2)
    style_feats = (rng.normal(size=(2, 6, 6, 4)) * 300 - 500).astype("float32")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        out = AdaIN()([x, style_feats])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.asarray(out).dtype == np.float16
    out = np.asarray(out, np.float64)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.mean((1, 2)), style_feats.mean((1, 2)), rtol=1e-2, atol=1.0)
    np.testing.assert_allclose(out.std((1, 2)), style_feats.std((1, 2)), rtol=1e-2)


def test_neural_style_transfer_optimises_the_image_under_mixed_precision():
    content = data.sample_image("astronaut", 24)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        nst = ch05.NeuralStyleTransfer(weights=None, learning_rate=0.05)   # VGG in float16
        result, history = nst.stylize(content, data.sample_image("coffee", 24), steps=6)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result.dtype == np.float32 and np.isfinite(history["loss"]).all()
    assert history["loss"][-1] < history["loss"][0] and not np.allclose(result, content)


def test_projection_works_for_a_generator_built_under_mixed_precision():
    from common.ch06 import project_to_latent

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        gen = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, use_bias=False),
                                keras.layers.Reshape((4, 4, 1))])
        target = np.asarray(gen(np.array([[0.5, -1.0, 0.3, 0.8]], np.float32)), np.float32)[0]
        _, image, losses = project_to_latent(gen, target, steps=100, restarts=2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert image.dtype == np.float32 and np.isfinite(losses).all()
    assert losses[-1] < 0.1 * losses[0]


def test_gaugan_mixed_precision_steps_move_the_networks_like_float32(precision_check):
    size, classes = 16, 4
    rng = np.random.default_rng(0)
    seg = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, (2, size, size))]
    img = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)

    def step():
        gen = ch06.build_gaugan_generator(size, classes, z_dim=8, base_filters=2, spade_hidden=4)
        enc = ch06.build_gaugan_encoder(size, 8, base_filters=2)
        disc = ch06.MultiScaleDiscriminator(size, classes, n_scales=2, base_filters=2)
        vgg = ch05.vgg_feature_extractor(ch05.STYLE_LAYERS, weights=None)
        model = ch06.GauGAN(gen, disc, enc, vgg=vgg)
        model.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
        before = _snapshot(model.generator_variables + model.discriminator.trainable_variables)
        d_step, g_step = model.discriminator_step, model.generator_step
        if precision_check.xla:
            d_step, g_step = (tf.function(f, jit_compile=True) for f in (d_step, g_step))
        logs = precision_check.until_applied(lambda: d_step(seg, img), model.d_optimizer)
        logs.update(precision_check.until_applied(lambda: g_step(seg, img), model.g_optimizer))
        return model, logs, before

    precision_check(step, lambda model: [model.generator, model.encoder, model.discriminator])


def _tiny_generator():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(12), keras.layers.Reshape((2, 2, 3))])


@pytest.mark.parametrize("make, argument", [
    (lambda: ch05.build_adain_decoder(0), "width_divisor"),
    (lambda: ch06.interpolate_latents(np.zeros(3), np.ones(3), steps=1), "steps"),
    (lambda: ch06.project_to_latent(_tiny_generator(), np.zeros((2, 2, 3)), restarts=0), "restarts"),
    (lambda: ch06.fit_palette(np.random.default_rng(0).uniform(size=(2, 4, 4, 3)), 0), "n_classes"),
    (lambda: ch06.build_gaugan_generator(0, 4), "image_size"),
    (lambda: ch06.build_gaugan_encoder(0), "image_size"),
    (lambda: ch06.build_gaugan_generator(16, 4, z_dim=0, base_filters=2, spade_hidden=4), "z_dim"),
    (lambda: ch06.MultiScaleDiscriminator(16, 4, n_scales=0), "n_scales"),
], ids=["adain_width_divisor", "interpolate_steps", "projection_restarts", "palette_classes",
        "gaugan_image_size", "encoder_image_size", "gaugan_z_dim", "discriminator_scales"])
def test_zero_and_unsupported_sizes_raise_one_value_error_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()
