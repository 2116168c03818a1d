"""ProGAN and StyleGAN layers, networks and progressive training (spec ch07 §4, §7)."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from common.ch07 import ProgressiveGAN, build_progan, build_stylegan, mix_styles, progan_discriminator_base, progan_discriminator_block, progan_generator_base, progan_generator_block, progressive_schedule, stylegan_base_block, stylegan_synthesis_block, to_rgb, truncate
from common.ch07 import EqualizedConv2D, EqualizedDense, FadeIn, MappingNetwork, MinibatchStdDev, NoiseInjection, PixelNorm, StyleAdaIN
from common.ch07 import drift_penalty


# ---------------------------------------------------------------- ProGAN's three helpers
def test_pixel_norm_gives_unit_mean_square_over_channels(rng):
    layer = PixelNorm()
    x = (rng.normal(size=(2, 4, 4, 16)) * 10).astype("float32")
    y = layer(x).numpy()
    np.testing.assert_allclose((y ** 2).mean(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(y / x, np.broadcast_to(y[..., :1] / x[..., :1], x.shape),
                               rtol=1e-5)  # one scale per pixel
    assert not layer.weights


def _group_std_numpy(x, groups):
    n = len(x)
    grouped = x.reshape(groups, n // groups, *x.shape[1:])
    std = np.sqrt(grouped.var(axis=0) + 1e-8).mean(axis=(1, 2, 3))
    return np.tile(std, groups)


def test_minibatch_stddev_adds_the_group_std_channel(rng):
    x = (rng.normal(size=(8, 4, 4, 16)) * rng.uniform(0.5, 2, (8, 1, 1, 1))).astype("float32")
    y = MinibatchStdDev()(x).numpy()
    assert y.shape == (8, 4, 4, 17)
    np.testing.assert_array_equal(y[..., :16], x)
    extra = y[..., 16]
    assert np.allclose(extra, extra[:, :1, :1])  # constant over (H, W)
    np.testing.assert_allclose(extra[:, 0, 0], _group_std_numpy(x.astype("float64"), 4),
                               rtol=1e-5)
    np.testing.assert_allclose(extra[:2, 0, 0], extra[2:4, 0, 0])  # n and n + N/G: one group
    same = MinibatchStdDev()(np.repeat(x[:1], 4, axis=0)).numpy()[..., 16]
    np.testing.assert_allclose(same, 1e-4, rtol=1e-3)


@pytest.mark.parametrize("n,groups", [(6, 3), (2, 2), (1, 1), (5, 1)])
def test_minibatch_stddev_other_batch_sizes(rng, n, groups):
    x = rng.normal(size=(n, 2, 2, 3)).astype("float32")
    y = MinibatchStdDev()(x).numpy()
    np.testing.assert_allclose(y[:, 0, 0, 3], _group_std_numpy(x.astype("float64"), groups),
                               rtol=1e-5)


def test_minibatch_stddev_with_a_dynamic_batch(rng):
    layer = MinibatchStdDev()
    fn = tf.function(layer, input_signature=[tf.TensorSpec((None, 2, 2, 3), tf.float32)])
    x = rng.normal(size=(6, 2, 2, 3)).astype("float32")
    np.testing.assert_allclose(fn(x).numpy(), layer(x).numpy(), rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_equalized_conv_scales_by_he_constant(rng, k):
    layer = EqualizedConv2D(8, k)
    x = rng.normal(size=(2, 5, 5, 6)).astype("float32")
    y = layer(x).numpy()
    assert y.shape == (2, 5, 5, 8)
    assert layer.scale == pytest.approx(np.sqrt(2.0 / (k * k * 6)))
    layer.bias.assign(np.arange(8, dtype="float32"))
    p = (k - 1) // 2
    padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
    scale = np.float32(np.sqrt(2.0 / (k * k * 6)))
    expected = tf.nn.conv2d(padded, layer.kernel.value * scale, 1, "VALID")
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy() + np.arange(8), atol=1e-5)


def test_equalized_layers_store_unit_weights_and_honour_gain_and_lrmul():
    conv = EqualizedConv2D(64, 3)
    conv.build((None, 8, 8, 64))
    assert conv.kernel.numpy().std() == pytest.approx(1.0, abs=0.02)
    for gain, lrmul in [(2.0, 1.0), (1.0, 1.0), (2.0, 0.01)]:
        dense = EqualizedDense(256, gain=gain, lrmul=lrmul)
        dense.build((None, 512))
        effective = dense.kernel.numpy() * dense.scale
        assert effective.std() == pytest.approx(np.sqrt(gain / 512), rel=0.02)
        assert dense.scale == pytest.approx(np.sqrt(gain / 512) * lrmul)


def test_fade_in_blends_new_and_old():
    alpha = keras.Variable(0.0, trainable=False)
    fade = FadeIn(alpha)
    new, old = np.full((1, 2), 3.0, "float32"), np.full((1, 2), -1.0, "float32")
    np.testing.assert_allclose(fade([new, old]).numpy(), old)
    alpha.assign(1.0)
    np.testing.assert_allclose(fade([new, old]).numpy(), new)
    alpha.assign(0.25)
    np.testing.assert_allclose(fade([new, old]).numpy(), 0.25 * 3 - 0.75)


def test_drift_penalty_is_over_real_and_fake():
    real, fake = np.array([1.0, 3.0]), np.array([-2.0, 0.0])
    assert float(drift_penalty(real, fake)) == pytest.approx(1e-3 * (1 + 9 + 4 + 0) / 4)


# ---------------------------------------------------------------- ProGAN networks
def test_progan_block_parameter_counts():
    assert progan_generator_base().count_params() == 6_562_304
    assert progan_generator_block(8, 512, 512).count_params() == 4_719_616
    assert progan_generator_block(64, 256, 512).count_params() == 1_769_984
    assert progan_generator_block(1024, 16, 32).count_params() == 6_944
    assert to_rgb(512, 4).count_params() == 1_539
    assert progan_discriminator_base().count_params() == 6_559_745
    assert progan_discriminator_block(64, 256, 512).count_params() == 1_770_240
    assert progan_discriminator_block(1024, 16, 32).count_params() == 6_960


def _active_params(net):
    rgb = net.rgb if hasattr(net, "rgb") else net.from_rgb
    extra = net.mapping.count_params() if hasattr(net, "mapping") else 0
    return extra + sum(b.count_params() for b in net.blocks[:net.level + 1]) + \
        rgb[net.level].count_params()


def test_progan_totals_at_64():
    g, d = build_progan(64)
    for net in (g, d):
        net.set_resolution(64)
    assert _active_params(g) == 22_491_907
    assert _active_params(d) == 22_489_857
    g.set_resolution(4)
    d.set_resolution(4)
    assert _active_params(g) == 6_563_843 and _active_params(d) == 6_561_793


def _small_progan(target=16):
    return build_progan(target, z_dim=8, max_filters=8)


def test_fade_in_at_alpha_zero_equals_the_lower_resolution_path(rng):
    g, d = _small_progan()
    z = rng.normal(size=(4, 8)).astype("float32")
    g.set_resolution(8)
    low = g(z).numpy()
    g.set_resolution(16, fade=True)
    g.alpha.assign(0.0)
    np.testing.assert_allclose(g(z).numpy(), low.repeat(2, axis=1).repeat(2, axis=2), atol=1e-5)
    g.alpha.assign(1.0)
    high = g(z).numpy()
    g.set_resolution(16)
    np.testing.assert_allclose(high, g(z).numpy(), atol=1e-6)

    images = rng.uniform(-1, 1, (4, 16, 16, 3)).astype("float32")
    pooled = images.reshape(4, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    d.set_resolution(8)
    d_low = d(pooled).numpy()
    d.set_resolution(16, fade=True)
    d.alpha.assign(0.0)
    np.testing.assert_allclose(d(images).numpy(), d_low, rtol=1e-4, atol=1e-5)


def test_progressive_schedule():
    phases = progressive_schedule(4, 64, 320_000)
    assert len(phases) == 9
    assert phases[0][:2] == (4, "stable") and phases[1][:2] == (8, "transition")
    for res, _, batch, steps in phases:
        assert 320_000 <= steps * batch < 320_000 + batch


# ---------------------------------------------------------------- StyleGAN layers
def test_noise_injection(rng):
    layer = NoiseInjection()
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    noise = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    np.testing.assert_array_equal(layer(x, noise=noise).numpy(), x)  # B starts at 0
    layer.noise_scale.assign([1.0, -2.0, 0.5])
    np.testing.assert_allclose(layer([x, noise]).numpy() - x, noise * [1.0, -2.0, 0.5],
                               atol=1e-6)
    assert not np.allclose(layer(x).numpy(), layer(x).numpy())  # fresh noise per call


def test_style_adain_sets_the_style_statistics(rng):
    layer = StyleAdaIN()
    x = (rng.normal(size=(3, 8, 8, 4)) * 5 + 2).astype("float32")
    w = rng.normal(size=(3, 16)).astype("float32")
    layer([x, w])
    for dense in (layer.style_scale, layer.style_bias):
        dense.bias.assign(rng.normal(size=4).astype("float32"))
    y = layer([x, w]).numpy()
    y_s, y_b = (t.numpy() for t in layer.styles(w))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), y_b, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2)), np.abs(y_s), rtol=1e-4, atol=1e-4)
    assert layer.count_params() == 2 * (16 * 4 + 4)


def test_mapping_network_and_stylegan_block_counts(rng):
    mapping = MappingNetwork(n_broadcast=5)
    ws = mapping(rng.normal(size=(2, 512)).astype("float32")).numpy()
    assert ws.shape == (2, 5, 512) and np.all(ws == ws[:, :1])
    assert mapping.count_params() == 2_101_248
    assert stylegan_base_block().count_params() == 3_419_648
    assert stylegan_synthesis_block(8, 512, 512).count_params() == 5_771_264
    assert stylegan_synthesis_block(64, 256, 512).count_params() == 2_295_808


def test_stylegan_generator_total_at_64():
    g, _ = build_stylegan(64)
    g.set_resolution(64)
    assert _active_params(g) == 25_131_267


# ---------------------------------------------------------------- style mixing, truncation
@pytest.fixture(scope="module")
def small_stylegan():
    keras.utils.set_random_seed(7)
    g, d = build_stylegan(16, z_dim=8, w_dim=8, max_filters=8)
    g.set_resolution(16)
    # Give the noise scales and styles non-trivial values, as after training.
    for v in g.trainable_variables:
        if "noise_scale" in v.path:
            v.assign(np.full(v.shape, 0.3, "float32"))
    return g, d


def test_mix_styles_picks_blocks(small_stylegan, rng):
    g, _ = small_stylegan
    z_a, z_b = (rng.normal(size=(2, 8)).astype("float32") for _ in range(2))
    ws_a, ws_b = g.styles(z_a), g.styles(z_b)
    mixed = mix_styles(ws_a, ws_b, 2).numpy()
    np.testing.assert_array_equal(mixed[:, :2], ws_a.numpy()[:, :2])
    np.testing.assert_array_equal(mixed[:, 2:], ws_b.numpy()[:, 2:])
    noise = g.make_noise(2, seed=0)
    image_a, image_b = g.synthesize(ws_a, noise).numpy(), g.synthesize(ws_b, noise).numpy()
    np.testing.assert_allclose(g.synthesize(mix_styles(ws_a, ws_b, 0), noise), image_b, atol=1e-6)
    np.testing.assert_allclose(g.synthesize(mix_styles(ws_a, ws_b, g.n_blocks), noise), image_a,
                               atol=1e-6)
    coarse = g.synthesize(mix_styles(ws_a, ws_b, 1), noise).numpy()
    assert not np.allclose(coarse, image_a) and not np.allclose(coarse, image_b)
    # style mixing with the same seed is no mixing at all
    np.testing.assert_allclose(g.generate(z_a, z_mix=z_a, crossover=1, noise=noise), image_a,
                               atol=1e-6)


def test_truncation(small_stylegan, rng):
    g, _ = small_stylegan
    g.w_avg.assign(rng.normal(size=8).astype("float32"))
    z = rng.normal(size=(3, 8)).astype("float32")
    ws = g.styles(z)
    np.testing.assert_allclose(truncate(ws, g.w_avg, 1.0), ws, atol=1e-7)
    collapsed = truncate(ws, g.w_avg, 0.0).numpy()
    np.testing.assert_allclose(collapsed, np.broadcast_to(g.w_avg.numpy(), collapsed.shape))
    noise = [np.repeat(n[:1], 3, axis=0) for n in g.make_noise(1, seed=1)]
    images = g.generate(z, psi=0.0, noise=noise).numpy()
    average = g.synthesize(np.broadcast_to(g.w_avg.numpy(), (1, g.n_blocks, 8)),
                           [n[:1] for n in noise]).numpy()
    np.testing.assert_allclose(images, np.repeat(average, 3, axis=0), atol=1e-5)
    half = truncate(ws, g.w_avg, 0.5, cutoff=1).numpy()
    np.testing.assert_allclose(half[:, 1:], ws.numpy()[:, 1:])
    assert not np.allclose(half[:, 0], ws.numpy()[:, 0])


# ---------------------------------------------------------------- progressive training
def test_train_step_changes_only_the_active_variables(rng):
    g, d = build_stylegan(16, z_dim=8, w_dim=8, max_filters=8)
    gan = ProgressiveGAN(g, d)
    gan.compile()
    gan.grow(4, "stable", steps=2)
    opt_4 = gan.g_optimizer
    block_4 = g.blocks[0]
    gan.train_step(tf.constant(rng.uniform(-1, 1, (4, 4, 4, 3)).astype("float32")))
    trained = [v.numpy().copy() for v in block_4.weights]
    gan.grow(8, "transition", steps=4)
    assert gan.g_optimizer is not opt_4 and g.blocks[0] is block_4
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(trained, block_4.weights))
    assert float(gan.alpha.numpy()) == 0.0

    nets = {"g": g, "d": d}
    active = {k: {id(v) for v in n.active_variables()} for k, n in nets.items()}
    before = {k: [(v, v.numpy().copy()) for v in n.trainable_variables] for k, n in nets.items()}
    logs = gan.train_step(tf.constant(rng.uniform(-1, 1, (4, 8, 8, 3)).astype("float32")))
    for k in nets:
        for v, old in before[k]:
            changed = not np.array_equal(old, v.numpy())
            if id(v) not in active[k]:
                assert not changed, f"inactive {v.path} changed"
    assert sum(not np.array_equal(o, v.numpy()) for v, o in before["g"]) >= 20
    assert sum(not np.array_equal(o, v.numpy()) for v, o in before["d"]) >= 6
    assert float(gan.alpha.numpy()) == pytest.approx(0.25)
    assert np.isfinite(float(logs["d_loss"])) and float(logs["gp"]) >= 0
    assert int(gan.g_optimizer.iterations) == 1 and int(gan.d_optimizer.iterations) == 1
    gan.grow(8, "stable", steps=4)
    assert float(gan.alpha.numpy()) == 1.0 and int(gan.g_optimizer.iterations) == 1


def test_totals_at_1024():
    """The full 4->1024 networks match the papers' sizes (ProGAN ~23.1M, StyleGAN G ~26.2M)."""
    widths = {128: 128, 256: 64, 512: 32, 1024: 16}
    prev = {128: 256, 256: 128, 512: 64, 1024: 32}
    g_extra = sum(progan_generator_block(r, f, prev[r]).count_params() for r, f in widths.items())
    d_extra = sum(progan_discriminator_block(r, f, prev[r]).count_params()
                  for r, f in widths.items())
    s_extra = sum(stylegan_synthesis_block(r, f, prev[r]).count_params() for r, f in widths.items())
    rgb_64, rgb_1024 = to_rgb(256, 64).count_params(), to_rgb(16, 1024).count_params()
    from_64, from_1024 = 4 * 256, 4 * 16
    assert 22_491_907 - rgb_64 + g_extra + rgb_1024 == 23_079_187
    assert 22_489_857 - from_64 + d_extra + from_1024 == 23_077_137
    assert 25_131_267 - rgb_64 + s_extra + rgb_1024 == 26_211_507


# ---------------------------------------------------------------- widgets
def test_style_mixer_widget_reacts_to_its_controls(small_stylegan):
    from common.widgets import StyleMixer

    g, _ = small_stylegan
    widget = StyleMixer(g, seed_a=0, seed_b=1)
    first = widget.current.copy()
    third = first.shape[1] // 3
    np.testing.assert_allclose(first[:, -third:], first[:, :third], atol=1e-6)  # mix = A
    widget.toggles[0].value = "B"
    assert not np.allclose(widget.current, first)
    for toggle in widget.toggles:
        toggle.value = "B"
    np.testing.assert_allclose(widget.current[:, -third:], widget.current[:, third + 1:2 * third + 1],
                               atol=1e-6)  # every block from B: the mix is B
    before = widget.current.copy()
    widget.seed_a.value = 5
    assert not np.allclose(widget.current[:, :third], before[:, :third])
    assert widget.image.value


def test_truncation_widget_reacts_to_psi(small_stylegan):
    from common.widgets import StyleTruncation

    g, _ = small_stylegan
    g.w_avg.assign(np.zeros(8, "float32"))
    widget = StyleTruncation(g, n=3, psi=1.0)
    first = widget.current.copy()
    widget.psi.value = 0.0
    assert not np.allclose(widget.current, first)
    w = widget.current.shape[1] // 3
    np.testing.assert_allclose(widget.current[:, :w], widget.current[:, w + 1:2 * w + 1],
                               atol=1e-6)  # psi 0: every seed gives the average image
    widget.cutoff.value = 1
    assert not np.allclose(widget.current[:, :w], widget.current[:, w + 1:2 * w + 1])


def test_save_and_load_stylegan_round_trip(small_stylegan, tmp_path, rng):
    from common.ch07 import load_stylegan, save_stylegan

    g, _ = small_stylegan
    g.w_avg.assign(rng.normal(size=8).astype("float32"))
    save_stylegan(g, tmp_path)
    loaded = load_stylegan(tmp_path)
    assert loaded.res == g.res and load_stylegan(tmp_path / "missing") is None
    np.testing.assert_array_equal(loaded.w_avg.numpy(), g.w_avg.numpy())
    z, noise = rng.normal(size=(2, 8)).astype("float32"), g.make_noise(2, seed=0)
    np.testing.assert_allclose(loaded.generate(z, noise=noise), g.generate(z, noise=noise),
                               atol=1e-6)


def test_fit_progressive_checkpoints_and_resumes_by_phase(tmp_path, rng):
    from common.ch07 import fit_progressive

    images = tf.data.Dataset.from_tensor_slices(rng.uniform(-1, 1, (8, 8, 8, 3)).astype("float32"))
    schedule = progressive_schedule(4, 8, 2, {4: 2, 8: 2})  # 3 phases of 1 step
    g, d = build_progan(8, z_dim=4, max_filters=4)
    gan = ProgressiveGAN(g, d)
    gan.compile()
    records = fit_progressive(gan, images, schedule[:2], checkpoint_dir=tmp_path)
    assert [r["phase"] for r in records] == ["stable", "transition"]
    saved = [v.numpy().copy() for v in g.trainable_weights]
    g2, d2 = build_progan(8, z_dim=4, max_filters=4)
    gan2 = ProgressiveGAN(g2, d2)
    gan2.compile()
    assert fit_progressive(gan2, images, schedule[:2], checkpoint_dir=tmp_path) == []
    for a, v in zip(saved, g2.trainable_weights):  # nothing left to train: the saved weights, loaded
        np.testing.assert_array_equal(a, v.numpy())
    records = fit_progressive(gan2, images, schedule, checkpoint_dir=tmp_path)
    assert [(r["res"], r["phase"]) for r in records] == [(8, "stable")]  # resumed at phase 3
    # Rerun once all is done (issue 13): nothing trains, but every phase's record is still there for
    # the notebooks' plots (they raised on the empty list), and the networks end at the last phase.
    from common.ch07 import phase_records

    assert fit_progressive(gan2, images, schedule, checkpoint_dir=tmp_path) == []
    done = phase_records(tmp_path)
    assert [(r["res"], r["phase"]) for r in done] == [(4, "stable"), (8, "transition"),
                                                      (8, "stable")]
    assert all(np.isfinite(r["history"]["d_loss"][-1]) for r in done) and g2.res == 8


# ---------------------------------------------------------------- mixed precision (issue 13)
_TINY = {"progan": (build_progan, dict(z_dim=8, max_filters=8)),
         "stylegan": (build_stylegan, dict(z_dim=8, w_dim=8, max_filters=8))}


@pytest.mark.parametrize("family", sorted(_TINY))
def test_a_mixed_precision_progressive_step_moves_the_weights_like_a_float32_step(precision_check,
                                                                                   family):
    """A ProGAN / StyleGAN step (8x8 fade-in) under mixed_float16 moves each network's weights like
    one in float32 (it crashed on float16/float32 mismatches before). The optimizers that `grow`
    makes anew at every resolution are loss-scaled. Three steps come first: at the initial loss
    scale of 2^15 the gradient penalty's second derivatives overflow float16, so the first critic
    update is skipped and the scale halved, as dynamic loss scaling should."""
    build, kwargs = _TINY[family]
    real = tf.constant(np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3)).astype("float32"))
    runs = {}

    def step():
        g, d = build(8, **kwargs)
        gan = ProgressiveGAN(g, d)
        gan.compile()
        gan.grow(4, "stable", steps=2)
        gan.grow(8, "transition", steps=8)  # a new resolution: new optimizers
        if keras.config.dtype_policy().name == "mixed_float16":
            assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
            assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
            assert d.blocks[-1].layers[-2].compute_dtype == "float16"
        train = tf.function(gan.train_step, jit_compile=True) if precision_check.xla else gan.train_step
        for _ in range(3):
            train(real)
        before = [np.array(w) for net in (g, d) for w in net.trainable_weights]
        runs[keras.config.dtype_policy().name + ("+xla" if precision_check.xla else "")] = (gan, before)
        return gan, train(real), before

    precision_check(step, lambda gan: [gan.generator, gan.discriminator])
    for k, name in enumerate(("generator", "discriminator")):  # each network on its own, too
        moved = {}
        for policy, (gan, before) in runs.items():
            n_g = len(gan.generator.trainable_weights)
            old = before[:n_g] if k == 0 else before[n_g:]
            now = getattr(gan, name).trainable_weights
            moved[policy] = np.sqrt(sum(np.sum((np.array(a) - b) ** 2) for a, b in zip(now, old)))
        for variant in ("mixed_float16", "mixed_float16+xla"):
            assert 0.5 <= moved[variant] / moved["float32"] <= 2.0, (name, moved)


def test_the_stylegan_generator_computes_in_float32_under_mixed_precision():
    """Its flat feature maps at initialisation give AdaIN gradients of 1e8 and more (beyond float16
    at any loss scale), so the generator is built in float32; the critic uses float16."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        g, d = build_stylegan(8, z_dim=8, w_dim=8, max_filters=8)
        assert keras.config.dtype_policy().name == "mixed_float16"  # restored after the build
    finally:
        keras.mixed_precision.set_global_policy("float32")
    dtypes = {layer.compute_dtype for block in g.blocks + g.rgb for layer in block.layers}
    assert dtypes == {"float32"} and g.mapping.compute_dtype == g.compute_dtype == "float32"
    assert d.blocks[0].layers[-1].compute_dtype == "float16"
    assert g(np.zeros((2, 8), "float32")).dtype == "float32"


def test_progressive_statistics_stay_finite_where_float16_overflows(rng):
    """Activations of 1000 (their squares overflow float16's 65504): pixel norm, minibatch std-dev,
    style modulation and the drift stay finite and right under mixed precision."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x = (rng.normal(size=(4, 4, 4, 8)) * 1000).astype("float32")
        y = PixelNorm()(x)
        np.testing.assert_allclose((np.asarray(y, "float32") ** 2).mean(-1), 1.0, rtol=1e-2)
        std = np.asarray(MinibatchStdDev()(x), "float32")[..., -1]
        assert np.isfinite(std).all() and std.min() > 100
        w = rng.normal(size=(4, 8)).astype("float32")
        assert np.isfinite(np.asarray(StyleAdaIN()([x, w]), "float32")).all()
        g, d = build_stylegan(8, z_dim=8, w_dim=8, max_filters=8)
        assert g.w_avg.dtype == "float32" and d(x[..., :3]).dtype == "float32"
        assert float(drift_penalty(np.full(2, 1000.0, "float16"), np.zeros(2, "float16"))) == \
            pytest.approx(1e-3 * 1e6 / 2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------- checkpoints that survive a kill
def _save_until_killed(directory, saved_phases, saved_generators, saving):
    """Child process of the kill test: resume as `fit_progressive` does, then save phase after
    phase (every weight set to the number of completed phases) and the StyleGAN generator, until
    killed."""
    import warnings
    from pathlib import Path

    from common.ch07 import restore_phase, save_phase, save_stylegan

    warnings.simplefilter("ignore")
    directory = Path(directory)
    g, d = build_stylegan(4, z_dim=4, w_dim=4, max_filters=4, mapping_layers=1)
    gan = ProgressiveGAN(g, d)
    records = restore_phase(gan, directory)
    saving.value = 1
    while True:
        index = len(records)
        for w in g.weights + d.weights:
            if "float" in str(w.dtype):
                w.assign(np.full(w.shape, index + 1, "float32"))
        records.append(dict(res=4, phase="stable", batch=1, steps=1, history={"d_loss": [0.0]}))
        save_phase(gan, directory, index, records)
        saved_phases.value = index + 1
        save_stylegan(g, directory / "final")
        saved_generators.value = index + 1


def _all_equal(nets):
    return {float(v) for net in nets for w in net.trainable_weights for v in np.unique(w.numpy())}


def test_a_kill_during_saves_always_leaves_a_checkpoint_to_resume_from(tmp_path):
    """SIGKILL a child process 20 times at random moments while it writes phase checkpoints and
    StyleGAN generators; after every kill the newest complete checkpoint loads (G, D and the record
    of one and the same phase, at least as new as the last save the child finished), and skipped
    files are named. Before, Keras truncated `generator.weights.h5` in place: a kill mid-save left a
    broken file and no previous one."""
    import multiprocessing
    import signal
    import time
    import warnings

    from common.ch07 import load_stylegan, restore_phase

    ctx = multiprocessing.get_context("forkserver")  # one process imports TensorFlow, children fork
    ctx.set_forkserver_preload(["common.ch07"])
    g, d = build_stylegan(4, z_dim=4, w_dim=4, max_filters=4, mapping_layers=1)
    gan = ProgressiveGAN(g, d)
    rng, last, kills_mid_save = np.random.default_rng(0), 0, 0
    for _ in range(20):
        phases, generators, saving = (ctx.RawValue("i", 0) for _ in range(3))
        child = ctx.Process(target=_save_until_killed,
                            args=(str(tmp_path), phases, generators, saving))
        child.start()
        deadline = time.monotonic() + 120
        while not saving.value and child.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert saving.value, f"the child did not start saving (exit code {child.exitcode})"
        time.sleep(rng.uniform(0.0, 1.0))  # one round of saves takes ~0.5 s here
        child.kill()
        child.join()
        assert child.exitcode == -signal.SIGKILL
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            records = restore_phase(gan, tmp_path)
            loaded = load_stylegan(tmp_path / "final")
        skipped = [str(w.message) for w in caught if "skipped" in str(w.message)]
        assert all(str(tmp_path) in message for message in skipped), skipped
        kills_mid_save += bool(skipped) or any(tmp_path.rglob("tmp-*"))
        completed = len(records)
        assert completed >= max(phases.value, last)  # the newest complete save, or a newer one
        if completed:
            assert _all_equal([g, d]) == {float(completed)}  # G, D and record of one phase
        assert (loaded is not None) >= (generators.value > 0)
        if loaded is not None:
            assert len(_all_equal([loaded])) == 1 and _all_equal([loaded]).pop() >= generators.value
        last = completed
    assert last >= 3 and kills_mid_save >= 1


def test_resume_skips_a_damaged_checkpoint_and_names_it(tmp_path):
    """The newest phase checkpoint's generator file truncated (as a kill during Keras' in-place save
    left it): resume warns, naming the file, and loads the phase before; only the newest two phase
    folders are kept."""
    from common.ch07 import phase_records, restore_phase, save_phase

    g, d = build_progan(8, z_dim=4, max_filters=4)
    gan = ProgressiveGAN(g, d)
    records = []
    for index in range(3):
        for w in g.weights + d.weights:
            w.assign(np.full(w.shape, index + 1, "float32"))
        records.append(dict(res=4, phase="stable", batch=2, steps=1, history={"d_loss": [index]}))
        save_phase(gan, tmp_path, index, records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phase-02", "phase-03"]
    damaged = tmp_path / "phase-03" / "generator.weights.h5"
    damaged.write_bytes(damaged.read_bytes()[:300])
    g2, d2 = build_progan(8, z_dim=4, max_filters=4)
    with pytest.warns(UserWarning, match=f"skipped the checkpoint file {damaged}"):
        restored = restore_phase(ProgressiveGAN(g2, d2), tmp_path)
    assert len(restored) == 2 and _all_equal([g2, d2]) == {2.0}  # G and D of phase 2
    (tmp_path / "phase-02" / "phase.json").unlink()  # a save cut short before its mark
    with pytest.warns(UserWarning) as caught:
        assert restore_phase(ProgressiveGAN(g2, d2), tmp_path) == []
    assert [str(damaged) in str(w.message) for w in caught] == [True, False]
    assert "phase-02/phase.json" in str(caught[1].message)
    assert [r["history"]["d_loss"] for r in phase_records(tmp_path)] == [[0], [1], [2]]


def test_a_stylegan_save_keeps_the_previous_file_and_load_falls_back_to_it(small_stylegan, tmp_path,
                                                                          rng):
    from common.ch07 import load_stylegan, save_stylegan

    g, _ = small_stylegan
    z, noise = rng.normal(size=(2, 8)).astype("float32"), g.make_noise(2, seed=0)
    first = g.generate(z, noise=noise).numpy()
    save_stylegan(g, tmp_path)
    old_scale = g.rgb[-1].weights[0].numpy()
    g.rgb[-1].weights[0].assign(old_scale * 2)
    try:
        save_stylegan(g, tmp_path)
    finally:
        g.rgb[-1].weights[0].assign(old_scale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generator.previous.weights.h5",
                                                          "generator.weights.h5"]
    newest = tmp_path / "generator.weights.h5"
    newest.write_bytes(newest.read_bytes()[:300])
    with pytest.warns(UserWarning, match=f"skipped the checkpoint file {newest}"):
        loaded = load_stylegan(tmp_path)
    np.testing.assert_allclose(loaded.generate(z, noise=noise), first, atol=1e-6)
    newest.unlink()  # killed between moving the newest file aside and renaming the new one
    with pytest.warns(UserWarning, match="generator.weights.h5"):
        assert load_stylegan(tmp_path) is not None


def test_write_atomically_keeps_the_old_file_when_the_write_fails(tmp_path):
    from common.ch07 import write_atomically

    path = tmp_path / "g.weights.h5"
    path.write_bytes(b"the good weights")

    def write_half(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(path, write_half)
    assert path.read_bytes() == b"the good weights"
    write_atomically(path, lambda tmp: open(tmp, "wb").write(b"new"))
    assert path.read_bytes() == b"new" and not (tmp_path / "tmp-g.weights.h5").exists()


# ---------------------------------------------------------------- bad sizes fail early and clearly
def test_zero_steps_raise_instead_of_training_forever(rng):
    from common.ch07 import fit_progressive

    with pytest.raises(ValueError, match="images_per_phase must be >= 1"):
        progressive_schedule(4, 8, 0, {4: 2, 8: 2})
    images = tf.data.Dataset.from_tensor_slices(rng.uniform(-1, 1, (4, 8, 8, 3)).astype("float32"))
    g, d = build_progan(8, z_dim=4, max_filters=4)
    gan = ProgressiveGAN(g, d)
    gan.compile()
    for schedule in ([(4, "stable", 2, 0)], [(4, "stable", 0, 1)], []):
        with pytest.raises(ValueError, match="steps >= 1"):
            fit_progressive(gan, images, schedule)


@pytest.mark.parametrize("make,message", [
    (lambda: EqualizedDense(4, lrmul=0), "lrmul > 0.*lrmul=0"),
    (lambda: EqualizedDense(0), "units.*> 0.*units=0"),
    (lambda: EqualizedConv2D(4, 3, gain=0.0), "gain.*> 0.*gain=0.0"),
    (lambda: EqualizedConv2D(4, -1), "odd kernel_size > 0.*kernel_size=-1"),
    (lambda: MinibatchStdDev(group_size=0), "group_size >= 1, got 0"),
    (lambda: progressive_schedule(4, 2048, 100), "batch_sizes needs a batch >= 1.*target_res=2048"),
    (lambda: progressive_schedule(4, 8, 100, {4: 2}), "batch_sizes needs a batch >= 1"),
    (lambda: progressive_schedule(4, 8, 100, {4: 0, 8: 2}), "batch_sizes needs a batch >= 1"),
    (lambda: progressive_schedule(0, 8, 100), "1 <= start_res <= target_res.*start_res=0"),
    (lambda: build_progan(2048, z_dim=4, max_filters=4),
     "resolution 2048 has no width.*target_res"),
], ids=["dense-lrmul", "dense-units", "conv-gain", "conv-kernel", "stddev-group", "schedule-2048",
        "schedule-missing", "schedule-zero-batch", "schedule-start-0", "progan-2048"])
def test_unsupported_sizes_raise_one_clear_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()
