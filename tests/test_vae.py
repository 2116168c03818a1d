"""Chapter 2: autoencoder and VAE builders (the book's parameter counts), the KL divergence
against a Monte-Carlo estimate, the reparameterised sampler, the VAE training model,
latent-space arithmetic and the latent widgets."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from common import data, widgets, callbacks, ch02


# --------------------------------------------------------------------------- parameter counts

@pytest.mark.parametrize("z_dim, encoder, decoder, autoencoder", [
    (10, 5_762, 90_177, 95_939),
    (2, 2_618, 65_089, 67_707),
    (100, 41_132, 372_417, 413_549),
])
def test_mnist_autoencoder_parameter_counts(z_dim, encoder, decoder, autoencoder):
    enc, dec = ch02.build_mnist_encoder(z_dim), ch02.build_mnist_decoder(z_dim)
    assert enc.count_params() == encoder
    assert dec.count_params() == decoder
    ae = ch02.build_autoencoder(enc, dec)
    assert ae.count_params() == autoencoder
    assert ae.output_shape == ae.input_shape == (None, 28, 28, 1)


def test_dense_encoder_and_conv_feature_map():
    dense = ch02.build_dense_encoder(10)
    assert dense.count_params() == 111_146 and dense.output_shape == (None, 10)
    enc = ch02.build_mnist_encoder(10)
    flat = [l for l in enc.layers if isinstance(l, keras.layers.Flatten)][0]
    assert flat.input.shape[1:] == (7, 7, 8) and flat.output.shape[1:] == (392,)
    # the latent layer is linear (the book's listing wrongly puts a ReLU there)
    assert enc.get_layer("z").activation is keras.activations.linear


def test_mnist_decoder_output_and_no_transposed_conv():
    dec = ch02.build_mnist_decoder(10)
    assert not any(isinstance(l, keras.layers.Conv2DTranspose) for l in dec.layers)
    out = dec(np.random.default_rng(0).normal(size=(3, 10)).astype("float32") * 5).numpy()
    assert out.shape == (3, 28, 28, 1) and out.min() >= 0 and out.max() <= 1


def test_mnist_vae_parameter_counts_and_outputs():
    enc, dec = ch02.build_mnist_vae_encoder(2), ch02.build_mnist_decoder(2)
    assert enc.count_params() == 3_404 and dec.count_params() == 65_089
    vae = ch02.VAE(enc, dec)
    assert vae.count_params() == 68_493
    z, mean, logvar = enc(np.zeros((5, 28, 28, 1), "float32"))
    assert z.shape == mean.shape == logvar.shape == (5, 2)


def test_face_vae_parameter_counts_and_shapes():
    enc, dec = ch02.build_face_encoder(200, 112), ch02.build_face_decoder(200, 112)
    assert enc.count_params() == 1_321_136 and dec.count_params() == 732_771
    trainable = sum(int(np.prod(w.shape)) for w in enc.trainable_weights)
    assert trainable == 1_320_752 and enc.count_params() - trainable == 384
    assert ch02.VAE(enc, dec).count_params() == 2_053_907
    flat = [l for l in enc.layers if isinstance(l, keras.layers.Flatten)][0]
    assert flat.input.shape[1:] == (7, 7, 64)
    outs = enc(np.zeros((2, 112, 112, 3), "float32"))
    assert [tuple(t.shape) for t in outs] == [(2, 200)] * 3
    x_hat = dec(np.random.default_rng(0).normal(size=(2, 200)).astype("float32")).numpy()
    assert x_hat.shape == (2, 112, 112, 3) and x_hat.min() >= 0 and x_hat.max() <= 1
    with pytest.raises(ValueError):
        ch02.build_face_encoder(200, 100)


def test_conv_blocks_shapes_and_serialisation():
    x = np.zeros((2, 16, 16, 3), "float32")
    down = ch02.DownConvBlock(5)
    assert down(x).shape == (2, 8, 8, 5) and down.count_params() == 3 * 3 * 3 * 5 + 5 + 4 * 5
    up = ch02.UpConvBlock(4)
    assert up(x).shape == (2, 32, 32, 4) and up.count_params() == 3 * 3 * 3 * 4 + 4
    sampler = ch02.GaussianSampling.from_config(ch02.GaussianSampling(seed=3, noise_scale=0.5).get_config())
    assert (sampler.seed, sampler.noise_scale) == (3, 0.5)


# --------------------------------------------------------------------------- KL divergence

def test_kl_known_values_and_reductions():
    kl = lambda m, lv, **kw: float(ch02.kl_divergence(np.array([[m]], "float32"),
                                                        np.array([[lv]], "float32"), **kw))
    assert kl(0.0, 0.0) == pytest.approx(0.0, abs=1e-7)
    assert kl(1.0, 0.0) == pytest.approx(0.5, abs=1e-6)
    assert kl(0.0, np.log(2.0)) == pytest.approx(0.153426, abs=1e-6)
    rng = np.random.default_rng(1)
    mean, logvar = rng.normal(size=(1, 6)).astype("float32"), rng.normal(size=(1, 6)).astype("float32")
    assert float(ch02.kl_divergence(mean, logvar, reduction="sum")) == pytest.approx(
        6 * float(ch02.kl_divergence(mean, logvar)), rel=1e-5)
    per = ch02.kl_divergence(mean, logvar, reduction="none").numpy()
    assert per.shape == (1, 6) and (per > 0).all()  # positive away from N(0, 1)


def test_kl_matches_a_monte_carlo_estimate():
    """KL(q || p) = E_q[log q(z) - log p(z)], estimated with 400,000 samples per dimension."""
    rng = np.random.default_rng(2)
    mean = np.array([0.0, 1.5, -0.7, 0.3], np.float64)
    logvar = np.array([0.0, -1.0, 0.8, np.log(0.2)], np.float64)
    sigma = np.exp(0.5 * logvar)
    z = mean + sigma * rng.standard_normal((400_000, 4))
    log_q = -0.5 * (((z - mean) / sigma) ** 2 + logvar + np.log(2 * np.pi))
    log_p = -0.5 * (z ** 2 + np.log(2 * np.pi))
    reference = (log_q - log_p).mean(0)
    closed = ch02.kl_divergence(mean[None].astype("float32"), logvar[None].astype("float32"),
                                  reduction="none").numpy()[0]
    np.testing.assert_allclose(closed, reference, atol=0.01)
    assert closed[0] == pytest.approx(0.0, abs=1e-7) and (closed[1:] > 0.05).all()


# --------------------------------------------------------------------------- sampling layer

def test_gaussian_sampling_statistics():
    n = 100_000
    mean = np.full((n, 1), 5.0, "float32")
    logvar = np.full((n, 1), np.log(9.0), "float32")
    z = ch02.GaussianSampling(seed=3)([mean, logvar]).numpy()
    assert abs(z.mean() - 5.0) < 0.05 and abs(z.std() - 3.0) < 0.05


def test_gaussian_sampling_seed_and_noise_scale():
    mean = np.arange(6, dtype="float32").reshape(2, 3)
    logvar = np.zeros((2, 3), "float32")
    a = ch02.GaussianSampling(seed=11)([mean, logvar]).numpy()
    b = ch02.GaussianSampling(seed=11)([mean, logvar]).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, mean)
    np.testing.assert_array_equal(ch02.GaussianSampling(noise_scale=0.0)([mean, logvar]).numpy(), mean)


def test_gaussian_sampling_gradients_reach_mean_and_logvar():
    mean = tf.Variable(np.random.default_rng(0).normal(size=(4, 3)).astype("float32"))
    logvar = tf.Variable(np.random.default_rng(1).normal(size=(4, 3)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        z = ch02.GaussianSampling(seed=5)([mean, logvar])
        total = tf.reduce_sum(z)
    d_mean, d_logvar = tape.gradient(total, [mean, logvar])
    np.testing.assert_allclose(d_mean.numpy(), 1.0)
    eps = (z.numpy() - mean.numpy()) / np.exp(0.5 * logvar.numpy())
    np.testing.assert_allclose(d_logvar.numpy(), 0.5 * np.exp(0.5 * logvar.numpy()) * eps,
                               rtol=1e-5, atol=1e-6)
    assert np.abs(d_logvar.numpy()).min() > 0


def test_gaussian_sampling_in_a_functional_model_any_batch():
    enc = ch02.build_mnist_vae_encoder(2, seed=0)
    for batch in (1, 7):
        z, mean, _ = enc(np.random.default_rng(batch).random((batch, 28, 28, 1)).astype("float32"))
        assert z.shape == (batch, 2) and not np.allclose(z, mean)


# --------------------------------------------------------------------------- the VAE model

def _small_vae(kl_weight=0.01, rc_loss="bce", seed=0):
    keras.utils.set_random_seed(seed)
    return ch02.VAE(ch02.build_mnist_vae_encoder(2, seed=seed),
                    ch02.build_mnist_decoder(2), kl_weight=kl_weight, rc_loss=rc_loss)


def test_vae_reports_loss_as_rc_plus_weighted_kl():
    x = np.random.default_rng(0).random((16, 28, 28, 1)).astype("float32")
    vae = _small_vae(kl_weight=0.3, rc_loss="mse")
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    logs = vae.fit(x, x, batch_size=16, epochs=1, verbose=0).history
    assert set(logs) == {"loss", "rc_loss", "kl_loss"}
    assert logs["loss"][0] == pytest.approx(logs["rc_loss"][0] + 0.3 * logs["kl_loss"][0], abs=1e-6)
    ev = vae.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    assert ev["loss"] == pytest.approx(ev["rc_loss"] + 0.3 * ev["kl_loss"], abs=1e-6)


def test_kl_weight_zero_leaves_only_the_reconstruction_gradient():
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")

    def grads(kl_weight, which):
        vae = _small_vae(kl_weight=kl_weight, seed=4)
        vae.encoder.get_layer("z").noise_scale = 0.0  # deterministic z = mean
        with tf.GradientTape() as tape:
            total, rc, _ = vae.compute_vae_losses(x, training=True)
            target = total if which == "total" else rc
        return [g.numpy() for g in tape.gradient(target, vae.trainable_variables)]

    for a, b in zip(grads(0.0, "total"), grads(0.0, "rc")):
        np.testing.assert_allclose(a, b, atol=1e-7)
    assert any(not np.allclose(a, b, atol=1e-6) for a, b in zip(grads(1.0, "total"), grads(1.0, "rc")))


def _real_digits():
    """scikit-learn's bundled 8x8 handwritten digits, enlarged x3 and padded to 28x28, in [0, 1]."""
    from sklearn.datasets import load_digits

    images = load_digits().images.astype("float32") / 16.0
    images = np.repeat(np.repeat(images, 3, axis=1), 3, axis=2)
    return np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None]


def test_short_training_on_real_digits_lowers_reconstruction_loss(tmp_path):
    x = _real_digits()
    x_train, x_val = x[:1500], x[1500:]
    vae = _small_vae(kl_weight=0.01, rc_loss="bce")
    vae.compile(optimizer=keras.optimizers.Adam(2e-3))
    before = vae.evaluate(x_val, batch_size=300, verbose=0, return_dict=True)["rc_loss"]
    keep_best = callbacks.save_best(tmp_path / "vae.weights.h5", monitor="val_rc_loss", patience=3)
    hist = vae.fit(x_train, batch_size=64, epochs=4, validation_data=(x_val,), callbacks=keep_best,
                   verbose=0).history
    after = vae.evaluate(x_val, batch_size=300, verbose=0, return_dict=True)["rc_loss"]
    assert after < 0.75 * before, (before, after)
    assert hist["val_rc_loss"][-1] < hist["val_rc_loss"][0]
    assert (tmp_path / "vae.weights.h5").exists()


def test_save_best_insists_on_keras3_weight_names(tmp_path):
    with pytest.raises(ValueError):
        callbacks.save_best(tmp_path / "model.h5")
    ckpt, stop = callbacks.save_best(tmp_path / "m.weights.h5", monitor="val_rc_loss", patience=2)
    assert ckpt.monitor == stop.monitor == "val_rc_loss" and stop.patience == 2


def test_reconstruction_losses():
    x = np.array([[0.0, 1.0, 0.5, 0.2]], "float32")
    x_hat = np.array([[0.1, 0.7, 0.5, 0.4]], "float32")
    assert float(ch02.reconstruction_loss(x, x_hat, "mse")) == pytest.approx(
        np.mean((x - x_hat) ** 2), rel=1e-6)
    bce = -np.mean(x * np.log(x_hat) + (1 - x) * np.log(1 - x_hat))
    assert float(ch02.reconstruction_loss(x, x_hat, "bce")) == pytest.approx(bce, rel=1e-5)


# --------------------------------------------------------------------------- upsampling demo

def test_transposed_conv_checkerboard():
    x = np.ones((1, 4, 4, 1), "float32")
    for k, expected in ((3, {1.0, 2.0, 4.0}), (4, {4.0})):
        conv = keras.layers.Conv2DTranspose(1, k, strides=2, padding="same", use_bias=False,
                                            kernel_initializer="ones")
        y = conv(x).numpy()[0, ..., 0]
        assert y.shape == (8, 8)
        assert set(np.unique(y[2:-2, 2:-2]).tolist()) == expected


# --------------------------------------------------------------------------- latent arithmetic

class _ConstEncoder:
    """Toy encoder: mean = c for every image, logvar = 0."""

    def __init__(self, c):
        self.c = np.asarray(c, "float32")

    def __call__(self, x, training=False):
        m = np.tile(self.c, (len(x), 1))
        return m, m, np.zeros_like(m)


def test_latent_statistics_and_the_sampling_trick():
    c = [0.5, -1.0, 2.0]
    batches = [np.zeros((n, 2)) for n in (3, 5, 2)]
    stats = ch02.latent_statistics(_ConstEncoder(c), batches)
    np.testing.assert_allclose(stats.mean, c, atol=1e-6)
    assert stats.sigma_bar == pytest.approx(1.0) and stats.count == 10
    stats.sigma_bar = 0.4
    z = ch02.sample_latents(50_000, stats=stats, seed=0)
    np.testing.assert_allclose(z.mean(0), c, atol=0.02)
    np.testing.assert_allclose(z.std(0), 0.4, atol=0.02)
    prior = ch02.sample_latents(50_000, z_dim=3, seed=0)
    np.testing.assert_allclose(prior.std(0), 1.0, atol=0.02)


class _IdentityEncoder:
    def __call__(self, z, training=False):
        return z, z, np.zeros_like(z)


def test_attribute_vectors_recover_the_planted_direction(tmp_path):
    rng = np.random.default_rng(0)
    n, z_dim = 4000, 5
    label = rng.random(n) < 0.3
    z = (2.0 * label[:, None] * np.eye(z_dim)[0] + 0.3 * rng.standard_normal((n, z_dim))).astype("float32")
    other = rng.random(n) < 0.5
    attrs = {"Smiling": label, "Male": other, "Bald": np.zeros(n, bool)}
    sizes = [1000, 17, 983, 2000]
    bounds = np.cumsum([0] + sizes)
    batches = [(z[a:b], {k: v[a:b] for k, v in attrs.items()}) for a, b in zip(bounds[:-1], bounds[1:])]
    with pytest.warns(UserWarning, match="Bald"):
        vectors, counts = ch02.attribute_vectors(_IdentityEncoder(), batches, attrs)
    assert set(vectors) == {"Smiling", "Male"} and counts["Bald"] == (0, n)
    np.testing.assert_allclose(vectors["Smiling"], 2.0 * np.eye(z_dim)[0], atol=0.05)
    assert np.linalg.norm(vectors["Male"]) < 0.1
    one, _ = ch02.attribute_vectors(_IdentityEncoder(), [(z, attrs)], ["Smiling", "Male"])
    for k in one:
        np.testing.assert_allclose(vectors[k], one[k], atol=1e-5)
    path = ch02.save_vectors(tmp_path / "vectors.npz", vectors)
    back = ch02.load_vectors(path)
    np.testing.assert_array_equal(back["Smiling"], vectors["Smiling"])
    np.testing.assert_array_equal(ch02.edit_latent(z[:3], vectors, {"Smiling": 0.0}), z[:3])
    np.testing.assert_allclose(ch02.edit_latent(z[0], vectors, {"Smiling": 1.5}),
                               z[0] + 1.5 * vectors["Smiling"], atol=1e-6)


def test_latent_sweep_orientation():
    """z1 grows along the columns and z2 upward along the rows."""
    decoder = lambda z, training=False: np.tile(z[:, None, None, :1] * 0 + z[:, None, None, :], (1, 2, 2, 1))
    grid = ch02.latent_sweep(decoder, -1.0, 1.0, 3)
    assert grid.shape == (3, 3, 2, 2, 2)
    np.testing.assert_allclose(grid[:, :, 0, 0, 0][0], [-1, 0, 1])          # z1 across a row
    np.testing.assert_allclose(grid[:, :, 0, 0, 1][:, 0], [1, 0, -1])       # z2 down a column


# --------------------------------------------------------------------------- widgets

def test_latent_sliders_redraw():
    dec = ch02.build_mnist_decoder(2)
    w = widgets.latent_sliders(dec)
    assert isinstance(w, widgets.LatentCodeSliders)
    first, first_png = w.current.copy(), w.image.value
    w.sliders[0].value = 4.0
    assert w.image.value != first_png and not np.allclose(w.current, first)
    np.testing.assert_allclose(w.current, dec(np.array([[4.0, 0.0]], "float32")).numpy()[0], atol=1e-6)


def test_attribute_editor_sliders_reset_add_and_new_face():
    dec = ch02.build_face_decoder(8, 32)
    rng = np.random.default_rng(0)
    vectors = {name: 3.0 * rng.standard_normal(8).astype("float32") for name in ("Male", "Smiling", "Young")}
    faces = iter(rng.standard_normal((5, 8)).astype("float32"))
    editor = widgets.attribute_editor(dec, np.zeros(8), vectors, ["Male", "Smiling"],
                                      new_face=lambda: next(faces))
    base_png, base = editor.image.value, editor.current.copy()
    np.testing.assert_allclose(base, editor.base, atol=1e-6)
    editor.sliders["Male"].value = 2.5
    assert editor.image.value != base_png and not np.allclose(editor.current, base)
    np.testing.assert_allclose(editor.edited_z(), 2.5 * vectors["Male"], atol=1e-6)
    editor.reset()
    assert editor.image.value == base_png and editor.weights == {"Male": 0.0, "Smiling": 0.0}
    assert "Young" in editor.add_dropdown.options
    editor.add_dropdown.value = "Young"
    assert "Young" in editor.sliders and "Young" not in editor.add_dropdown.options
    old_base = editor.base_image.value
    editor.new_button.click()
    assert editor.base_image.value != old_base


# --------------------------------------------------------------------------- data (smoke mode)

def test_mnist_pairs_and_face_preprocessing():
    train, _ = data.load_mnist_autoencoder(16, smoke_examples=32)
    x, y = next(iter(train))
    assert x.shape == (16, 28, 28, 1) and x.dtype == tf.float32
    np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    photo = np.random.default_rng(0).integers(0, 256, (60, 40, 3)).astype(np.uint8)
    square = data.square_photo(photo, 32)
    assert square.shape == (32, 32, 3) and 0 <= square.min() and square.max() <= 1


# --------------------------------------------------------------------------- tf.distribute

_MIRRORED_SCRIPT = r'''
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from common import callbacks, ch02

x = np.random.default_rng(0).random((8, 28, 28, 1)).astype("float32")

def one_step(strategy):
    keras.utils.set_random_seed(7)
    with strategy.scope():
        enc = ch02.build_mnist_vae_encoder(2, seed=1)
        enc.get_layer("z").noise_scale = 0.0
        vae = ch02.VAE(enc, ch02.build_mnist_decoder(2), rc_loss="bce")
        vae.compile(optimizer=keras.optimizers.SGD(0.5))
    start = [w.numpy() for w in vae.weights]
    vae.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return start, [w.numpy() for w in vae.weights]

start, single = one_step(tf.distribute.get_strategy())
_, mirrored = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print("DIFF", max(float(np.abs(a - b).max()) for a, b in zip(single, mirrored)))
print("MOVED", max(float(np.abs(a - b).max()) for a, b in zip(single, start)))
'''


def test_mirrored_step_equals_single_device_step():
    """Two replicas, each with half the batch, must make the same update as one device:
    proves the loss is scaled by 1/num_replicas before the optimizer sums the gradients.
    Runs in a fresh process, because logical devices must be set before TensorFlow starts."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    values = dict(line.split() for line in out.stdout.splitlines() if line[:4] in ("DIFF", "MOVE"))
    moved, diff = float(values["MOVED"]), float(values["DIFF"])
    assert moved > 1e-4                            # the step really changed the weights
    assert diff < 1e-5 and diff < 0.01 * moved


# --------------------------------------------------------------------------- mixed precision, bad sizes

def test_a_mixed_precision_vae_step_moves_the_weights_like_a_float32_step(precision_check):
    """Keras' compile wraps the optimizer in a LossScaleOptimizer under mixed_float16; the VAE's own
    train_step must back-propagate from its loss scale (it did not: one SGD step moved the weights
    about 60,000x less than in float32). Both losses stay finite (BCE in float16 gave inf)."""
    x = np.random.default_rng(0).random((16, 28, 28, 1)).astype("float32")

    def step():
        vae = ch02.VAE(ch02.build_mnist_vae_encoder(2, seed=0), ch02.build_mnist_decoder(2),
                       kl_weight=0.01, rc_loss="bce")
        vae.compile(optimizer=keras.optimizers.SGD(0.5))
        before = [np.array(w) for w in vae.trainable_weights]
        return vae, vae.train_on_batch(x, x, return_dict=True), before

    precision_check(step)


def test_losses_are_float32_and_finite_on_float16_outputs():
    x_hat = np.array([[0.0, 1.0, 0.5]], "float16")        # a sigmoid saturated in float16
    x = np.array([[0.0, 1.0, 1.0]], "float32")
    for kind in ("mse", "bce"):
        value = ch02.reconstruction_loss(x, x_hat, kind)
        assert value.dtype == "float32" and np.isfinite(float(value))
    kl = ch02.kl_divergence(np.zeros((1, 2), "float16"), np.full((1, 2), 12.0, "float16"))
    assert kl.dtype == "float32" and np.isfinite(float(kl))  # exp(12) overflows float16


@pytest.mark.parametrize("image_size", [0, 8, 100])
def test_face_vae_sizes_must_be_positive_multiples_of_16(image_size):
    with pytest.raises(ValueError, match="image_size"):
        ch02.build_face_encoder(16, image_size)
    with pytest.raises(ValueError, match="image_size"):
        ch02.build_face_decoder(16, image_size)
