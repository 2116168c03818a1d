"""Chapter 4 (image-to-image translation): the book's parameter counts, PatchGAN geometry,
instance norm and latent tiling against their definitions, per-network updates of the four
training models, the paired/unpaired loaders and the widgets."""

import socket

import numpy as np
import pytest
import tensorflow as tf
import keras

from common import config, data, ch04
from common.ch04 import InstanceNormalization, TileLatent
from common.ch04 import l1_loss, lsgan_d_loss, lsgan_g_loss

SMALL = (128, 128, 3)  # the smallest side the 7-level U-Net accepts (1x1 bottleneck)


def _count(model):
    return int(sum(np.prod(w.shape) for w in model.weights))


def _non_trainable(model):
    return int(sum(np.prod(w.shape) for w in model.non_trainable_weights))


# ---------------------------------------------------------------- parameter counts (spec §5)
def test_translation_networks_have_the_books_parameter_counts():
    unet = ch04.unet_generator()
    assert unet.output_shape == (None, 256, 256, 3) and _count(unet) == 13_514_880
    patch = ch04.patchgan_discriminator(conditional=True, sigmoid=True)
    assert _count(patch) == 2_768_641 and _non_trainable(patch) == 0
    assert _count(ch04.patchgan_discriminator(conditional=False, sigmoid=False)) == 2_765_569
    bicycle_g = ch04.bicycle_generator(z_dim=8)
    assert _count(bicycle_g) == 13_523_072
    assert bicycle_g.get_layer("down1").input.shape[-1] == 11  # image (3) + tiled z (8)
    encoder = ch04.bicycle_encoder()
    assert _count(encoder) == 11_279_120 and encoder.output_shape == [(None, 8), (None, 8)]


def test_unet_skip_concatenations_have_the_tables_channels():
    unet = ch04.unet_generator()
    widths = [unet.get_layer(f"skip{i}").output.shape[-1] for i in range(6, 0, -1)]
    assert widths == [512, 512, 512, 512, 256, 128]


@pytest.mark.parametrize("width, mode, g_params, g_fixed, d_params, d_fixed", [
    (64, "onehot", 1_481_217, 384, 1_044_545, 768),
    (128, "embedding", 5_010_433, 768, 4_121_601, 1_536),
])
def test_conditional_dcgan_counts(width, mode, g_params, g_fixed, d_params, d_fixed):
    g = ch04.conditional_dcgan_generator(width=width)
    d = ch04.conditional_dcgan_discriminator(width=width, label_mode=mode)
    assert (_count(g), _non_trainable(g)) == (g_params, g_fixed)
    assert (_count(d), _non_trainable(d)) == (d_params, d_fixed)
    images = g([tf.random.normal((10, 100)), tf.range(10)[:, None]])
    assert images.shape == (10, 32, 32, 1)
    assert d([images, tf.range(10)[:, None]]).shape == (10, 1)


# ---------------------------------------------------------------- PatchGAN geometry
def test_patchgan_output_is_30x30_like_the_paper_and_29x29_in_the_books_variant():
    a = tf.random.normal((2, 256, 256, 3))
    paper = ch04.patchgan_discriminator(base_filters=8)
    out = paper([a, a]).numpy()
    assert out.shape == (2, 30, 30, 1) and out.min() >= 0.0 and out.max() <= 1.0
    book = ch04.patchgan_discriminator(base_filters=8, paper_padding=False)
    assert book.output_shape == (None, 29, 29, 1)
    lsgan = ch04.patchgan_discriminator(conditional=False, sigmoid=False, base_filters=8)
    assert lsgan(a).shape == (2, 30, 30, 1) and lsgan(a).numpy().min() < 0.0


def _footprint(model, unit):
    """Rows and columns of the input pixels on which the output ``unit`` depends."""
    x = tf.random.normal((1, 256, 256, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = model(x)[0, unit[0], unit[1], 0]
    grad = np.abs(tape.gradient(score, x).numpy()[0]).sum(-1)
    rows, cols = np.nonzero(grad.sum(1))[0], np.nonzero(grad.sum(0))[0]
    assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)  # one solid square
    return (rows[0], rows[-1]), (cols[0], cols[-1])


@pytest.mark.parametrize("paper_padding, first_row", [(True, 8 * 14 - 23), (False, 8 * 14 - 15)])
def test_patchgan_units_see_70x70_patches_8_pixels_apart(paper_padding, first_row):
    model = ch04.patchgan_discriminator(conditional=False, sigmoid=False, base_filters=4,
                                      norm=False, paper_padding=paper_padding)
    rows, cols = _footprint(model, (14, 14))
    assert rows == cols == (first_row, first_row + 69)  # 70 pixels; book variant: 97..166
    rows_next, _ = _footprint(model, (15, 14))
    assert rows_next == (first_row + 8, first_row + 77)


# ---------------------------------------------------------------- layers
def test_instance_norm_is_per_sample_per_channel_and_has_2c_parameters():
    x = np.random.default_rng(0).normal(3.0, 5.0, size=(3, 8, 8, 4)).astype("float32")
    layer = InstanceNormalization()
    y = layer(x).numpy()
    assert layer.count_params() == 8
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-3)
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    gamma, beta = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.0, -1.0, 2.0, 0.5])
    layer.set_weights([gamma, beta])
    expected = gamma * (x - mean) / np.sqrt(var + 1e-3) + beta
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer(x, training=True), layer(x, training=False))
    other = x.copy()
    other[1:] = 0.0  # the other samples of the batch must not matter
    np.testing.assert_allclose(layer(other).numpy()[0], layer(x).numpy()[0], atol=1e-5)


def test_instance_norm_survives_a_keras_round_trip():
    layer = InstanceNormalization(epsilon=1e-5)
    layer.build((None, 4, 4, 6))
    clone = InstanceNormalization.from_config(layer.get_config())
    assert clone.epsilon == 1e-5 and clone.groups == -1


def test_tile_latent_repeats_each_code_over_the_grid():
    z = tf.constant(np.arange(3 * 8, dtype="float32").reshape(3, 8))
    tiled = TileLatent()([z, tf.zeros((3, 16, 12, 5))]).numpy()
    assert tiled.shape == (3, 16, 12, 8)  # batch kept: the book's multiples gave (9, ..., 64)
    np.testing.assert_array_equal(tiled, np.broadcast_to(z.numpy()[:, None, None, :], tiled.shape))


def test_lsgan_and_l1_losses():
    ones, zeros = tf.ones((2, 30, 30, 1)), tf.zeros((2, 30, 30, 1))
    assert float(lsgan_d_loss(ones, zeros)) == 0.0 and float(lsgan_g_loss(ones)) == 0.0
    assert float(lsgan_d_loss(zeros, ones)) == pytest.approx(1.0)
    assert float(lsgan_d_loss(zeros, ones, half=False)) == pytest.approx(2.0)
    assert float(l1_loss(ones, -ones)) == pytest.approx(2.0)


def _identity(shape=SMALL):
    x = keras.Input(shape)
    return keras.Model(x, keras.layers.Identity()(x))


def test_cycle_loss_is_zero_for_identity_generators_and_positive_otherwise():
    a, b = tf.random.uniform((2, *SMALL), -1, 1), tf.random.uniform((2, *SMALL), -1, 1)
    d = ch04.patchgan_discriminator(SMALL, conditional=False, sigmoid=False, base_filters=4)
    same = ch04.CycleGAN(_identity(), _identity(), d, d)
    assert float(same.cycle_loss(a, b)) == 0.0
    g = ch04.unet_generator(SMALL, base_filters=4)
    assert float(ch04.CycleGAN(g, _identity(), d, d).cycle_loss(a, b)) > 0.01


# ---------------------------------------------------------------- training models
def _snapshot(model):
    return [w.numpy().copy() for w in model.trainable_weights]


def _moved(model, before):
    return any(not np.array_equal(w, v.numpy()) for w, v in zip(before, model.trainable_weights))


def _check_updates(gan, batch, d_names, g_names):
    nets = {n: getattr(gan, n) for n in (*d_names, *g_names)}
    for step, movers in (("discriminator_step", d_names), ("generator_step", g_names)):
        before = {n: _snapshot(m) for n, m in nets.items()}
        logs = getattr(gan, step)(batch)
        assert all(np.isfinite(float(v)) for v in logs.values())
        for n, m in nets.items():
            assert _moved(m, before[n]) == (n in movers), f"{step}: {n} moved={not n in movers}"


def _unet(**kw):
    return ch04.unet_generator(SMALL, base_filters=4, **kw)


def _patch(conditional=False, sigmoid=False):
    return ch04.patchgan_discriminator(SMALL, conditional=conditional, sigmoid=sigmoid,
                                     base_filters=4)


def _pair(n=1):
    return tf.random.uniform((n, *SMALL), -1, 1), tf.random.uniform((n, *SMALL), -1, 1)


def test_pix2pix_updates_one_network_per_step():
    gan = ch04.Pix2Pix(_unet(), _patch(conditional=True, sigmoid=True))
    gan.compile()
    _check_updates(gan, _pair(), ["discriminator"], ["generator"])


def test_pix2pix_fit_overfits_one_synthetic_facade():
    """``fit`` (graph mode) on one fixed pair: block-structured input, smooth target. The L1
    term must fall below half its initial value (spec: 0.46 -> 0.05 within 200 steps)."""
    a, b = next(data.load_paired_archive("facades", "train", image_size=128, jitter=False,
                                         smoke_examples=3).batch(1).as_numpy_iterator())
    gan = ch04.Pix2Pix(ch04.unet_generator(SMALL, base_filters=8), _patch(conditional=True, sigmoid=True))
    gan.compile()
    start = float(l1_loss(b, gan.generator(a, training=True)))
    history = gan.fit(tf.data.Dataset.from_tensors((a, b)).repeat(), steps_per_epoch=20, epochs=3,
                      verbose=0)
    assert set(history.history) == {"d_loss", "g_adv", "g_l1", "g_loss"}
    assert history.history["g_l1"][-1] < 0.5 * start


def test_cyclegan_updates_one_side_per_step():
    gan = ch04.CycleGAN(_unet(), _unet(), _patch(), _patch())
    gan.compile()
    _check_updates(gan, _pair(), ["d_a", "d_b"], ["g_ab", "g_ba"])


def test_bicyclegan_updates_and_latent_l1_never_reaches_the_encoder():
    def make(**weights):
        gan = ch04.BicycleGAN(ch04.bicycle_generator(SMALL, z_dim=8, base_filters=4),
                              ch04.bicycle_encoder(SMALL, base_filters=4),
                              _patch(), _patch(), **weights)
        gan.compile()
        return gan

    gan = make()
    _check_updates(gan, _pair(2), ["d1", "d2"], ["generator", "encoder"])
    only_latent = make(lambda_image=0.0, lambda_kl=0.0, lambda_gan=0.0, lambda_latent=0.5)
    before_e, before_g = _snapshot(only_latent.encoder), _snapshot(only_latent.generator)
    only_latent.generator_step(_pair(2))
    assert not _moved(only_latent.encoder, before_e) and _moved(only_latent.generator, before_g)


def test_conditional_gan_updates_one_network_per_step():
    g = ch04.conditional_dcgan_generator(width=8)
    d = ch04.conditional_dcgan_discriminator(width=8)
    gan = ch04.ConditionalGAN(g, d)
    gan.compile()
    batch = (tf.random.uniform((4, 32, 32, 1), -1, 1), tf.constant([0, 3, 7, 9]))
    _check_updates(gan, batch, ["discriminator"], ["generator"])


# ---------------------------------------------------------------- data
def _side_by_side(path, left_value, right_value):
    pixels = np.zeros((64, 128, 3), np.uint8)
    pixels[:, :64] = left_value
    pixels[:, 64:] = right_value
    tf.io.write_file(str(path), tf.io.encode_png(pixels))  # PNG: exact values, decode_jpeg reads it
    return str(path)


@pytest.mark.parametrize("name, a_is_left", [("facades", False), ("edges2shoes", True)])
def test_decode_pair_takes_the_input_from_the_right_half(name, a_is_left, tmp_path):
    path = _side_by_side(tmp_path / "pair.jpg", 30, 200)
    a, b = data.decode_pair(path, name)
    assert a.shape == b.shape == (64, 64, 3)
    expected_a, expected_b = (30, 200) if a_is_left else (200, 30)
    assert float(tf.reduce_mean(a)) == expected_a and float(tf.reduce_mean(b)) == expected_b


def test_random_jitter_uses_the_same_window_and_flip_for_both():
    a = tf.random.uniform((64, 64, 3), 0, 200)
    for seed in range(6):
        tf.random.set_seed(seed)
        ja, jb = data.random_jitter_pair(a, a + 10.0, load_size=72, crop=64)
        assert ja.shape == (64, 64, 3)
        np.testing.assert_allclose(jb - ja, 10.0, atol=1e-4)


@pytest.mark.parametrize("name", ["facades", "edges2shoes"])
def test_paired_archive_smoke_gives_ordered_halves(name):
    assert config.is_smoke()
    ds = data.load_paired_archive(name, "train", image_size=128, smoke_examples=3)
    pairs = list(ds.as_numpy_iterator())
    assert len(pairs) >= 3
    for a, b in pairs:
        assert a.shape == b.shape == (128, 128, 3) and a.min() >= -1 and a.max() <= 1
        # synthetic layout: the input (label/edge map) is blue, the target (photo) is red
        assert a[..., 2].mean() > a[..., 0].mean() and b[..., 0].mean() > b[..., 2].mean()


def test_paired_archive_offline_full_run_says_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv(config.ENV_VAR, "0")

    def offline(*_args, **_kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load_paired_archive("facades", "train", data_dir=tmp_path)
    message = str(err.value)
    assert "facades.tar.gz" in message and "no network connection" in message
    assert data.PAIRED_ARCHIVES["facades"]["url"] in message and "\n" not in message


def test_unpaired_domains_smoke():
    ds = data.load_unpaired("cycle_gan/horse2zebra", "A", image_size=64, smoke_examples=3)
    images = list(ds.as_numpy_iterator())
    assert len(images) == 3 and all(i.shape == (64, 64, 3) for i in images)
    assert all(-1 <= i.min() and i.max() <= 1 for i in images)


# ---------------------------------------------------------------- widgets
def test_class_picker_redraws_when_the_class_or_seed_changes():
    from common.widgets import ClassPicker

    picker = ClassPicker(ch04.conditional_dcgan_generator(width=8), scale=1)
    first = picker.current.copy()
    assert first.shape == (32, 32, 1) and picker.image.value
    picker.dropdown.value = 7
    second = picker.current.copy()
    assert not np.allclose(first, second)
    picker.seed.value = 5
    assert not np.allclose(second, picker.current)


def test_translation_browser_follows_direction_and_index():
    from common.widgets import TranslationBrowser

    images = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 3)).astype("float32")
    browser = TranslationBrowser({"A -> B": (images, lambda x: -x), "B -> A": (images, lambda x: x)},
                                 targets={"A -> B": images}, scale=1)
    assert browser.current.shape == (8, 24, 3)
    first = browser.current.copy()
    browser.index.value = 2
    assert not np.allclose(first, browser.current)
    browser.toggle.value = "B -> A"
    assert browser.current.shape == (8, 16, 3)  # no target for this direction


def test_latent_sliders_change_the_output():
    from common.widgets import LatentSliders

    g = ch04.bicycle_generator(SMALL, z_dim=8, base_filters=4)
    sliders = LatentSliders(g, np.zeros(SMALL, "float32"), scale=1)
    first = sliders.current.copy()
    assert first.shape == (128, 256, 3)
    sliders.sliders[3].value = 2.5
    second = sliders.current.copy()
    assert not np.allclose(first, second)
    sliders.randomize()
    assert not np.allclose(second, sliders.current)


# ---------------------------------------------------------------- mixed precision, bad sizes
def _translation_model(kind):
    """A tiny training model of each family and one fixed batch for it."""
    rng = np.random.default_rng(0)
    pair = lambda n: tuple(rng.uniform(-1, 1, (n, *SMALL)).astype("float32") for _ in range(2))
    if kind.startswith("cgan"):
        mode = "embedding" if kind.endswith("embedding") else "onehot"
        gan = ch04.ConditionalGAN(ch04.conditional_dcgan_generator(8, width=8, label_mode=mode),
                                  ch04.conditional_dcgan_discriminator(width=8, label_mode=mode))
        return gan, (rng.uniform(-1, 1, (8, 32, 32, 1)).astype("float32"), np.arange(8) % 10)
    if kind == "pix2pix":
        return ch04.Pix2Pix(_unet(), _patch(conditional=True, sigmoid=True)), pair(1)
    if kind == "cyclegan":  # the losses are what is new here: small generators, 32x32 images
        shape = (32, 32, 3)
        gen = lambda: keras.Sequential([keras.Input(shape), keras.layers.Conv2D(8, 3, padding="same"),
                                        ch04.InstanceNormalization(), keras.layers.LeakyReLU(0.2),
                                        keras.layers.Conv2D(3, 3, padding="same", activation="tanh")])
        disc = lambda: ch04.patchgan_discriminator(shape, conditional=False, sigmoid=False, base_filters=4)
        batch = tuple(rng.uniform(-1, 1, (2, *shape)).astype("float32") for _ in range(2))
        return ch04.CycleGAN(gen(), gen(), disc(), disc()), batch
    return ch04.BicycleGAN(ch04.bicycle_generator(SMALL, z_dim=8, base_filters=4),
                           ch04.bicycle_encoder(SMALL, base_filters=4), _patch(), _patch()), pair(2)


KINDS = ["cgan", "cgan_embedding", "pix2pix", "cyclegan", "bicyclegan"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_mixed_precision_step_trains_like_a_float32_step(kind, precision_check):
    """Under mixed_float16 each training model takes a step (Pix2Pix, CycleGAN and BicycleGAN crashed
    on float16/float32 mismatches in their L1, LSGAN and KL terms) with finite losses, and the
    weights move as much as in float32 (SGD, which unlike Adam does not hide a missing loss scale).
    The loss scale starts at 2^8 instead of Keras' 2^15: at 2^15 dynamic loss scaling skips the first
    steps of some networks (their float16 gradients overflow; how many depends on the TF/Keras
    versions), and the networks would no longer start the compared step from the same weights."""
    def step():
        gan, batch = _translation_model(kind)
        mixed = keras.config.dtype_policy().name == "mixed_float16"
        gan.compile({name: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01), initial_scale=2.0 ** 8)
                     if mixed else keras.optimizers.SGD(0.01) for name in gan.networks})
        before = [np.array(w) for n in gan.networks for w in getattr(gan, n).trainable_weights]
        logs = gan.train_on_batch(*batch, return_dict=True)
        assert all(int(opt.iterations) == 1 for opt in gan.optimizers.values()), "an update was skipped"
        return gan, logs, before

    precision_check(step, lambda gan: [getattr(gan, n) for n in gan.networks])


def test_bad_sizes_and_names_raise_one_clear_value_error():
    with pytest.raises(ValueError, match="image_shape"):
        ch04.conditional_dcgan_generator(8, width=8, image_shape=(28, 28, 1))  # gave 24x24 images
    with pytest.raises(ValueError, match="image_shape"):
        ch04.conditional_dcgan_generator(8, width=8, image_shape=(4, 4, 1))
    gan = ch04.Pix2Pix(_unet(), _patch(conditional=True, sigmoid=True))
    with pytest.raises(ValueError, match="optimizers"):                        # was a KeyError
        gan.compile({"generatr": keras.optimizers.Adam()})
    bicycle, _ = _translation_model("bicyclegan")
    bicycle.compile()
    with pytest.raises(ValueError, match="at least 2 pairs"):                  # gave NaN losses
        bicycle.generator_step(_pair(1))


class _Counting(keras.Model):
    """A network that counts its calls."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def call(self, x, training=False):
        self.calls += 1
        return self.net(x, training=training)


def test_a_cyclegan_step_draws_each_fake_once():
    """One train step calls each generator three times (its fake, the other's cycle, its identity
    term): the discriminator step reuses the generator step's fakes (it drew them again, 4 calls)."""
    nets = [_Counting(n) for n in (_unet(), _unet(), _patch(), _patch())]
    gan = ch04.CycleGAN(*nets)
    gan.compile()
    before = [_snapshot(n) for n in nets]
    logs = gan.train_step(_pair())
    assert [n.calls for n in nets] == [3, 3, 2 + 1, 2 + 1]  # D: real, fake; G: adversarial term
    assert all(_moved(n, b) for n, b in zip(nets, before)) and np.isfinite(float(logs["d_a_loss"]))
