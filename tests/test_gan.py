"""Chapter 3 (GANs): builders, losses, gradient penalty, weight clipping, the GAN training
model, distribution, checkpoints, data and the interpolation widget (spec ch03 §4, §7)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import keras
import tensorflow as tf

from common import data, widgets, callbacks, ch02, ch03

ROOT = Path(__file__).resolve().parents[1]


def _counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable, model.count_params() - trainable


# ------------------------------------------------------------------ parameter counts (spec §5, §7)

@pytest.mark.parametrize("build, expected", [
    (lambda: ch03.build_dcgan_generator(), (4_111_361, 4_060_673, 50_688)),
    (lambda: ch03.build_dcgan_discriminator(), (22_337, 22_145, 192)),
    (lambda: ch03.build_wgan_generator(), (5_190_657, 5_173_505, 17_152)),
    (lambda: ch03.build_wgan_critic(), (4_111_361, 4_109_825, 1_536)),
    (lambda: ch03.build_wgan_critic(norm=None, use_bias=False), (4_107_393, 4_107_393, 0)),
    (lambda: ch03.build_wgan_generator(64, 3), (5_397_379, 5_380_099, 17_280)),
    (lambda: ch03.build_wgan_critic(64, 3, norm="layer", use_bias=False),
     (4_315_585, 4_315_585, 0)),
    (lambda: ch03.build_mlp_generator(), (30_352, 30_352, 0)),
    (lambda: ch03.build_mlp_discriminator(), (10_701, 10_701, 0)),
], ids=["dcgan_G", "dcgan_D", "wgan_G", "wgan_critic", "wgan_gp_critic", "celeba_G",
        "celeba_critic", "mlp_G", "mlp_D"])
def test_parameter_counts_match_the_book(build, expected):
    assert _counts(build()) == expected


def test_dcgan_output_shapes_and_ranges():
    g, d = ch03.build_dcgan_generator(width=16), ch03.build_dcgan_discriminator()
    images = g(np.random.default_rng(0).normal(size=(3, 100)).astype("float32") * 50)
    assert images.shape == (3, 28, 28, 1)
    assert float(tf.reduce_max(tf.abs(images))) <= 1.0
    scores = d(images).numpy()
    assert scores.shape == (3, 1) and np.all((scores >= 0) & (scores <= 1))


def test_wgan_gp_critic_has_no_batch_norm_or_conv_bias_and_a_linear_output():
    critic = ch03.build_wgan_critic(width=32, norm=None, use_bias=False)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in critic.layers)
    assert all(not l.use_bias for l in critic.layers if isinstance(l, keras.layers.Conv2D))
    dense = critic.layers[-1]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)).astype("float32")
    for bias in (-3.0, 3.0):  # an unbounded score: no sigmoid squashes it into [0, 1]
        dense.set_weights([np.zeros((512, 1), "float32"), np.array([bias], "float32")])
        np.testing.assert_allclose(critic(x).numpy(), bias)


def test_celeba_critic_normalises_each_sample_over_hwc():
    critic = ch03.build_wgan_critic(64, 3, width=64, norm="layer", use_bias=False)
    norm = next(l for l in critic.layers if isinstance(l, keras.layers.GroupNormalization))
    probe = keras.Model(critic.input, norm.output)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    out = probe(x).numpy().reshape(2, -1)
    np.testing.assert_allclose(out.mean(1), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(1), 1.0, atol=1e-2)


# ------------------------------------------------------------------ losses

def test_bce_and_wasserstein_losses_follow_their_definitions():
    y = np.array([[0.5], [-2.0], [3.0]], "float32")
    assert float(ch03.wasserstein_loss(np.ones_like(y), y)) == pytest.approx(-y.mean())
    assert float(ch03.wasserstein_loss(-np.ones_like(y), y)) == pytest.approx(y.mean())
    assert float(ch03.critic_loss_wasserstein(y, 2 * y)) == pytest.approx(y.mean())
    assert float(ch03.generator_loss_wasserstein(y)) == pytest.approx(-y.mean())
    d_real, d_fake = np.array([[0.8]], "float32"), np.array([[0.3]], "float32")
    expected = 0.5 * (-np.log(0.8) - np.log(0.7))
    assert float(ch03.discriminator_loss_bce(d_real, d_fake)) == pytest.approx(expected, rel=1e-4)
    assert float(ch03.generator_loss_bce(d_fake)) == pytest.approx(-np.log(0.3), rel=1e-4)
    logits = np.array([[2.0]], "float32")
    assert float(ch03.generator_loss_bce(logits, from_logits=True)) == pytest.approx(
        np.log1p(np.exp(-2.0)), rel=1e-4)


def test_one_sided_label_smoothing_penalises_perfect_confidence():
    perfect_real, perfect_fake = np.ones((4, 1), "float32"), np.zeros((4, 1), "float32")
    assert float(ch03.discriminator_loss_bce(perfect_real, perfect_fake)) < 1e-5
    assert float(ch03.discriminator_loss_bce(perfect_real, perfect_fake, real_label=0.9)) > 0.1


def test_kl_divergence_worked_values_and_reductions():
    assert float(ch02.kl_divergence(np.zeros((2, 3)), np.zeros((2, 3)))) == pytest.approx(0.0)
    mean = np.array([[1.0, 0.0]], "float32")
    assert float(ch02.kl_divergence(mean, np.zeros_like(mean))) == pytest.approx(0.25)
    assert float(ch02.kl_divergence(mean, np.zeros_like(mean), reduction="sum")) == pytest.approx(0.5)
    logvar = np.array([[np.log(4.0)]], "float32")
    expected = -0.5 * (1 + np.log(4.0) - 0.0 - 4.0)
    assert float(ch02.kl_divergence(np.zeros_like(logvar), logvar)) == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ gradient penalty

def _linear_critic(norm, shape=(4, 4, 2)):
    d = int(np.prod(shape))
    critic = keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                               keras.layers.Dense(1, use_bias=False)])
    w = np.random.default_rng(3).normal(size=(d, 1))
    critic.layers[-1].set_weights([(norm * w / np.linalg.norm(w)).astype("float32")])
    return critic


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_of_a_linear_critic_is_norm_minus_one_squared(norm, expected):
    critic = _linear_critic(norm)
    rng = np.random.default_rng(0)
    real, fake = (rng.normal(size=(8, 4, 4, 2)).astype("float32") for _ in range(2))
    gp = float(ch03.gradient_penalty(critic, real, fake))
    assert gp == pytest.approx(expected, abs=1e-4)


def test_gradient_penalty_reaches_the_critic_weights():
    rng = np.random.default_rng(0)
    real, fake = (rng.normal(size=(8, 4, 4, 2)).astype("float32") for _ in range(2))
    grads = {}
    for norm in (1.0, 2.0):
        critic = _linear_critic(norm)
        with tf.GradientTape() as tape:
            gp = ch03.gradient_penalty(critic, real, fake)
        grads[norm] = tape.gradient(gp, critic.trainable_variables)[0]
        assert grads[norm] is not None
    assert float(tf.norm(grads[1.0])) < 1e-3 < float(tf.norm(grads[2.0]))


def test_gradient_penalty_draws_one_epsilon_per_sample():
    seen = []

    def critic(x, training=False):
        seen.append(x)
        return tf.reduce_sum(x, axis=[1, 2, 3])

    real, fake = np.ones((16, 3, 3, 2), "float32"), np.zeros((16, 3, 3, 2), "float32")
    ch03.gradient_penalty(critic, real, fake)
    x_hat = seen[0].numpy()  # = eps * 1 + (1 - eps) * 0 = eps, broadcast over H, W, C
    eps = x_hat[:, 0, 0, 0]
    np.testing.assert_allclose(x_hat, np.broadcast_to(eps[:, None, None, None], x_hat.shape))
    assert np.all((eps >= 0) & (eps <= 1)) and len(np.unique(eps)) == len(eps)


# ------------------------------------------------------------------ weight clipping

def test_clip_weights_clips_trainables_and_leaves_batch_norm_statistics_alone():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                              keras.layers.BatchNormalization()])
    bn = model.layers[-1]
    model.layers[0].set_weights([np.full((3, 4), 0.7, "float32"), np.full(4, -0.4, "float32")])
    bn.moving_mean.assign(np.full(4, 3.0, "float32"))
    bn.moving_variance.assign(np.full(4, 5.0, "float32"))
    ch03.clip_weights(model, 0.01)
    for v in model.trainable_variables:
        assert float(tf.reduce_max(tf.abs(v))) <= 0.01 + 1e-7
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 3.0)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), 5.0)
    constraint = ch03.ClipConstraint(0.05)
    assert constraint.get_config() == {"clip_value": 0.05}
    np.testing.assert_allclose(constraint(np.array([-1.0, 0.01, 2.0])), [-0.05, 0.01, 0.05])


def _small_wgan(lipschitz, n_critic=5, norm=None):
    g = ch03.build_wgan_generator(16, z_dim=8, width=16)
    c = ch03.build_wgan_critic(16, width=16, norm=norm, use_bias=norm is not None)
    gan = (ch03.WGANGP(g, c, n_critic=n_critic) if lipschitz == "gp"
           else ch03.WGAN(g, c, n_critic=n_critic))
    gan.compile(keras.optimizers.RMSprop(5e-3), keras.optimizers.RMSprop(5e-3))
    return gan


def test_one_wgan_clip_step_clips_the_critic_and_makes_five_critic_updates():
    gan = _small_wgan("clip", norm="batch")
    bn = next(l for l in gan.discriminator.layers if isinstance(l, keras.layers.BatchNormalization))
    x = np.random.default_rng(0).uniform(-1, 1, (5 * 8, 16, 16, 1)).astype("float32")
    gan.fit(x, batch_size=40, epochs=1, verbose=0)
    for v in gan.discriminator.trainable_variables:
        assert float(tf.reduce_max(tf.abs(v))) <= 0.01 + 1e-7
    assert float(tf.reduce_max(bn.moving_variance)) > 0.02  # statistics were never clipped
    assert int(gan.d_optimizer.iterations) == 5 and int(gan.g_optimizer.iterations) == 1


def test_the_batch_is_split_into_n_critic_distinct_minibatches():
    gan = _small_wgan("gp")
    x = tf.range(40, dtype=tf.float32)[:, None]
    parts = [p.numpy().ravel() for p in gan.minibatches(x)]
    assert len(parts) == 5 and all(len(p) == 8 for p in parts)
    assert sorted(np.concatenate(parts).tolist()) == list(range(40))


# ------------------------------------------------------------------ separate updates

def _snapshot(variables):
    return [v.numpy().copy() for v in variables]


def _moved(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


@pytest.mark.parametrize("kind", ["dcgan", "wgan_gp"])
def test_each_update_moves_only_its_own_network(kind):
    if kind == "dcgan":
        g = ch03.build_dcgan_generator(z_dim=8, width=16)
        d = ch03.build_dcgan_discriminator(width=8)
        gan = ch03.GAN(g, d)
        gan.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2))
        real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    else:
        gan = _small_wgan("gp")
        g, d = gan.generator, gan.discriminator
        real = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 1)).astype("float32")
    z = np.random.default_rng(1).normal(size=(8, 8)).astype("float32")

    g0, d0 = _snapshot(g.trainable_variables), _snapshot(d.trainable_variables)
    gan.generator_step(z)
    assert not any(_moved(d0, d.trainable_variables)), "generator update changed the discriminator"
    assert all(_moved(g0, g.trainable_variables))

    g0, d0 = _snapshot(g.trainable_variables), _snapshot(d.trainable_variables)
    gan.discriminator_step(real, z)
    assert not any(_moved(g0, g.trainable_variables)), "discriminator update changed the generator"
    moved = _moved(d0, d.trainable_variables)
    # A Wasserstein critic's output bias cancels in mean D(fake) - mean D(real): no gradient.
    assert all(m for m, v in zip(moved, d.trainable_variables) if "kernel" in v.path)


# ------------------------------------------------------------------ tf.distribute

_DISTRIBUTED = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from common.ch03 import GAN, WGAN, WGANGP

    def networks(kind):
        keras.utils.set_random_seed(0)
        g = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8 * 8 * 2),
                              keras.layers.Reshape((8, 8, 2)),
                              keras.layers.Conv2D(1, 3, padding="same", activation="tanh")])
        # The GP critic is linear in x, so its penalty does not depend on the random epsilon.
        act = [] if kind == "gp" else [keras.layers.LeakyReLU(negative_slope=0.2)]
        d = keras.Sequential([keras.Input((8, 8, 1)),
                              keras.layers.Conv2D(4, 3, strides=2, padding="same"), *act,
                              keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid" if kind == "bce" else None)])
        return g, d

    def one_step(kind, strategy):
        n = {"bce": 1, "gp": 2, "clip": 3}[kind]
        rng = np.random.default_rng(1)
        x = rng.uniform(-1, 1, (8 * n, 8, 8, 1)).astype("float32")
        z = rng.normal(size=(8 * n, 4)).astype("float32")
        with strategy.scope():
            g, d = networks(kind)
            gan = (GAN(g, d) if kind == "bce" else WGANGP(g, d, n_critic=n) if kind == "gp"
                   else WGAN(g, d, n_critic=n, clip_value=0.05))
            # compiled steps for the WGANs; the DCGAN step runs eagerly to keep the test short
            gan.compile(keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05),
                        run_eagerly=kind == "bce")
        start = [w.numpy().copy() for w in g.weights + d.weights]
        ds = tf.data.Dataset.from_tensor_slices((x, z)).batch(8 * n)
        logs = {k: v[0] for k, v in gan.fit(ds, epochs=1, verbose=0).history.items()}
        end = [w.numpy() for w in g.weights + d.weights]
        return logs, end, max(float(np.max(np.abs(a - b))) for a, b in zip(end, start))

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    single = tf.distribute.OneDeviceStrategy("/cpu:0")
    out = {}
    for kind in ("bce", "gp", "clip"):
        one, two = one_step(kind, single), one_step(kind, mirrored)
        out[kind] = dict(replicas=mirrored.num_replicas_in_sync, one=one[0], two=two[0], moved=one[2],
                         weight_diff=max(float(np.max(np.abs(a - b))) for a, b in zip(one[1], two[1])))
    print("RESULT" + json.dumps(out))
""")


def test_one_step_on_two_replicas_equals_one_step_on_one_device():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", _DISTRIBUTED], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    results = json.loads(line[0][len("RESULT"):])
    for kind, r in results.items():
        assert r["replicas"] == 2
        assert r["moved"] > 1e-3, f"{kind}: the step did not train"
        assert r["weight_diff"] < 1e-5, f"{kind}: weights differ by {r['weight_diff']}"
        for key, value in r["one"].items():
            assert r["two"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (kind, key)


# ------------------------------------------------------------------ checkpoints

def _tiny_dcgan(seed):
    keras.utils.set_random_seed(seed)
    gan = ch03.GAN(ch03.build_dcgan_generator(z_dim=8, width=16),
                       ch03.build_dcgan_discriminator(width=8))
    gan.compile(keras.optimizers.Adam(1e-3), keras.optimizers.RMSprop(1e-3))
    return gan


def test_checkpoint_resume_restores_weights_and_optimizer_state(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (32, 28, 28, 1)).astype("float32")
    gan = _tiny_dcgan(0)
    gan.fit(x, batch_size=16, epochs=2, verbose=0,
            callbacks=[callbacks.TrainingCheckpoint(tmp_path, every=1, keep=1)])
    assert len(list(tmp_path.glob("ckpt-*.npz"))) == 1
    path, epoch = callbacks.latest_checkpoint(tmp_path)
    assert epoch == 2 and path.endswith("ckpt-00002.npz")

    fresh = _tiny_dcgan(1)
    assert not np.array_equal(fresh.generator.weights[0].numpy(), gan.generator.weights[0].numpy())
    assert callbacks.restore_checkpoint(fresh, tmp_path) == 2
    for a, b in zip(gan.generator.weights + gan.discriminator.weights,
                    fresh.generator.weights + fresh.discriminator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for opt_a, opt_b in ((gan.d_optimizer, fresh.d_optimizer), (gan.g_optimizer, fresh.g_optimizer)):
        assert int(opt_b.iterations) == int(opt_a.iterations) == 4
        for a, b in zip(opt_a.variables, opt_b.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    history = fresh.fit(x, batch_size=16, epochs=3, initial_epoch=2, verbose=0)
    assert len(history.history["g_loss"]) == 1 and int(fresh.g_optimizer.iterations) == 6
    assert callbacks.restore_checkpoint(_tiny_dcgan(2), tmp_path / "empty") == 0


# ------------------------------------------------------------------ learning and callbacks

def test_short_training_on_real_digits_moves_the_generator_towards_the_data():
    from sklearn.datasets import load_digits

    x = (load_digits().images / 8.0 - 1.0).astype("float32")[..., None]  # 8x8 digits in [-1, 1]
    g = keras.Sequential([keras.Input((16,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(64, activation="tanh"), keras.layers.Reshape((8, 8, 1))])
    d = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(64),
                          keras.layers.LeakyReLU(negative_slope=0.2),
                          keras.layers.Dense(1, activation="sigmoid")])
    gan = ch03.GAN(g, d)
    gan.compile(keras.optimizers.Adam(2e-3, 0.5), keras.optimizers.Adam(2e-3, 0.5))
    z = np.random.default_rng(0).normal(size=(500, 16)).astype("float32")

    def mean_image_gap():
        return float(np.mean((g(z).numpy().mean(0) - x.mean(0)) ** 2))

    before = mean_image_gap()
    frames = callbacks.SampleGrid(z[:4], every=10)
    history = gan.fit(x, batch_size=64, epochs=8, verbose=0, callbacks=[frames])
    assert mean_image_gap() < 0.4 * before
    assert set(history.history) == {"d_loss", "g_loss", "d_acc_real", "d_acc_fake"}
    assert frames.steps[0] == 0 and frames.steps[1] == 10 and len(frames.frames) == len(frames.steps)
    assert frames.frames[0].shape == (4, 8, 8, 1)
    assert not np.allclose(frames.frames[0], frames.frames[-1])


# ------------------------------------------------------------------ data and widget

def test_gan_datasets_are_in_minus_one_to_one_with_the_right_shapes():
    cases = [("fashion_mnist", None, 8, (8, 28, 28, 1)), ("fashion_mnist", 32, 40, (40, 32, 32, 1)),
             ("celeb_a", 64, 4, (4, 64, 64, 3))]
    for name, size, batch, shape in cases:
        x = next(iter(data.load_gan_images(name, batch, size, smoke_examples=48)))
        assert x.shape == shape and x.dtype == tf.float32, name
        assert -1.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    assert float(data.to_gan_range(np.array([[[0]], [[255]]], np.uint8))[0, 0, 0]) == -1.0


def test_gaussian_mixture_is_valid_and_centred_where_asked():
    assert np.all(np.linalg.eigvalsh(np.array(data.MIXTURE_COV)) > 0)
    points = data.gaussian_mixture_2d(100_000, seed=0)
    near_origin = np.linalg.norm(points, axis=1) < np.linalg.norm(points - 5.0, axis=1)
    np.testing.assert_allclose(points[near_origin].mean(0), [0, 0], atol=0.1)
    np.testing.assert_allclose(points[~near_origin].mean(0), [5, 5], atol=0.1)
    with pytest.raises(ValueError):
        data.gaussian_mixture_2d(10, covs=(np.eye(2), ((0.2, -2.0), (-2.0, 5.0))))


def test_latent_interpolation_widget_redraws_when_the_slider_moves():
    g = ch03.build_dcgan_generator(z_dim=8, width=16)
    w = widgets.latent_interpolation_widget(g, 8, seed_a=0, seed_b=1)
    start, png = w.current.copy(), w.image.value
    assert start.shape == (28, 28, 1) and png[:4] == b"\x89PNG"
    w.alpha.value = 1.0
    assert not np.allclose(start, w.current) and w.image.value != png
    np.testing.assert_allclose(w.z(), w.latent(1))
    w.alpha.value = 0.5
    linear_mid = w.z().copy()
    w.mode.value = "slerp"  # the spherical path keeps the norm of typical Gaussian codes
    a, b = np.linalg.norm(w.latent(0)), np.linalg.norm(w.latent(1))
    assert np.linalg.norm(linear_mid) < np.linalg.norm(w.z()) <= max(a, b) + 1e-4
    before = w.current.copy()
    w.seed_a.value = 5
    assert not np.allclose(before, w.current)


def test_backprop_divides_by_the_replica_count_sparse_gradients_too():
    from common import config

    table = keras.Variable(np.ones((5, 2), "float32"))
    dense = keras.Variable(np.ones((2,), "float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [3]) * 4.0) + tf.reduce_sum(dense * 2.0)
    sparse_grad, dense_grad = config.backprop(tape, loss, [table, dense], keras.optimizers.SGD(), replicas=2)
    assert isinstance(sparse_grad, tf.IndexedSlices) and sparse_grad.indices.numpy().tolist() == [3]
    np.testing.assert_allclose(sparse_grad.values.numpy(), [[2.0, 2.0]])
    np.testing.assert_allclose(dense_grad.numpy(), [1.0, 1.0])


def test_backprop_starts_from_the_loss_scale_under_mixed_precision():
    from common import config

    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(), initial_scale=1024.0)
    w = keras.Variable(np.ones((2,), "float32"))
    optimizer.build([w])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(w * 3.0)
    (grad,) = config.backprop(tape, loss, [w], optimizer)
    np.testing.assert_allclose(grad.numpy(), [3072.0, 3072.0])   # scaled; apply_gradients divides it out
    optimizer.apply_gradients([(grad, w)])
    np.testing.assert_allclose(w.numpy(), [1.0 - 0.01 * 3.0] * 2, rtol=1e-6)


@pytest.mark.parametrize("kind", ["dcgan", "wgan_gp"])
def test_a_mixed_precision_step_moves_the_weights_like_a_float32_step(kind, precision_check):
    rng = np.random.default_rng(0)

    def step():
        if kind == "dcgan":
            gan = ch03.GAN(ch03.build_dcgan_generator(z_dim=8, width=16), ch03.build_dcgan_discriminator(width=8))
            real = rng.uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
        else:
            gan = ch03.WGANGP(ch03.build_wgan_generator(16, z_dim=8, width=16),
                              ch03.build_wgan_critic(16, width=16, norm=None, use_bias=False), n_critic=2)
            real = rng.uniform(-1, 1, (16, 16, 16, 1)).astype("float32")
        gan.compile(keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05))
        nets = [gan.generator, gan.discriminator]
        before = [np.array(w) for net in nets for w in net.trainable_weights]
        z = np.random.default_rng(1).normal(size=(len(real), 8)).astype("float32")
        logs = gan.train_on_batch(real, z, return_dict=True)
        return gan, logs, before

    check_networks = lambda gan: [gan.generator, gan.discriminator]
    precision_check(step, check_networks)


def test_loss_scaling_keeps_gradients_that_float16_would_flush_to_zero(precision_check):
    """A loss a billion times smaller has gradients below float16's smallest number (6e-8); with
    dynamic loss scaling a mixed-precision step still moves the weights like a float32 step."""
    rng = np.random.default_rng(0)

    def step():
        gan = ch03.GAN(ch03.build_dcgan_generator(z_dim=8, width=16), ch03.build_dcgan_discriminator(width=8))
        gan.compile(keras.optimizers.SGD(5e7), keras.optimizers.SGD(5e7),
                    d_loss_fn=lambda r, f: 1e-9 * ch03.discriminator_loss_bce(r, f),
                    g_loss_fn=lambda f: 1e-9 * ch03.generator_loss_bce(f))
        before = [np.array(w) for w in gan.generator.trainable_weights + gan.discriminator.trainable_weights]
        real = rng.uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
        z = np.random.default_rng(1).normal(size=(8, 8)).astype("float32")
        return gan, gan.train_on_batch(real, z, return_dict=True), before

    precision_check(step, lambda gan: [gan.generator, gan.discriminator])
