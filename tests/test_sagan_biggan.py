"""Spectral norm, self-attention, conditional BN, orthogonal regularisation, SAGAN and BigGAN
(spec ch08 §4, §7)."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from common.ch08 import ConditionalHingeGAN, build_biggan_generator, build_sagan_discriminator, build_sagan_generator, truncated_z
from common.ch08 import ConditionalBatchNorm, SelfAttention, power_iteration, spectral_norm
from common.ch08 import DenseConditionalBatchNorm, OrthogonalRegularizer
from common.ch06 import hinge_d_loss, hinge_g_loss


def _counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return trainable, frozen


def _top_singular_value(kernel):
    mat = np.asarray(kernel).reshape(-1, np.shape(kernel)[-1])
    return np.linalg.svd(mat, compute_uv=False)[0]


# ---------------------------------------------------------------- spectral norm
def test_power_iteration_converges_to_the_top_singular_value(rng):
    w = rng.normal(size=(3, 3, 32, 64)).astype("float32")
    true = _top_singular_value(w)
    u0 = rng.normal(size=(288, 1)).astype("float32")
    sigma100, _ = power_iteration(w, u0, n_iter=100)
    sigma5, _ = power_iteration(w, u0, n_iter=5)
    assert abs(float(sigma100) - true) / true < 1e-3
    assert abs(float(sigma5) - true) / true <= 0.05
    for n in (1, 2, 5, 20):
        assert float(power_iteration(w, u0, n_iter=n)[0]) <= true * (1 + 1e-6)


def test_power_iteration_warm_start_keeps_the_estimate(rng):
    w = rng.normal(size=(64, 16)).astype("float32")
    _, u = power_iteration(w, n_iter=50, seed=1)
    sigma, _ = power_iteration(w, u, n_iter=1)
    np.testing.assert_allclose(float(sigma), _top_singular_value(w), rtol=1e-4)


def test_spectral_norm_drives_the_kernel_to_unit_norm_in_training_only(rng):
    layer = spectral_norm(keras.layers.Conv2D(64, 3))
    x = rng.normal(size=(2, 8, 8, 32)).astype("float32")
    layer(x)
    assert tuple(layer.vector_u.shape) == (1, 64) and not layer.vector_u.trainable
    layer.layer.kernel.assign(layer.layer.kernel * 3.0)  # sigma well above 1
    before = layer.layer.kernel.numpy().copy()
    layer(x, training=False)
    np.testing.assert_array_equal(layer.layer.kernel.numpy(), before)
    assert _top_singular_value(before) > 2.0
    # One warm-started power iteration per call: the kernel's sigma -> 1. How fast depends on
    # the gap between the top two singular values (here 1.02 after 10 calls, 1.001 after 30).
    for _ in range(100):
        layer(x, training=True)
    assert abs(_top_singular_value(layer.layer.kernel.numpy()) - 1.0) < 1e-3


def test_spectral_norm_refuses_an_embedding():
    with pytest.raises(ValueError):
        spectral_norm(keras.layers.Embedding(10, 4))


def test_a_constraint_written_as_call_is_never_applied():
    """The book's SpectralNorm constraint implements ``call``; Keras only invokes
    ``__call__``, so the constraint is a no-op (spec ch08 §6.1)."""

    class ZeroViaCall(keras.constraints.Constraint):
        def call(self, w):  # the book's pattern
            return w * 0.0

    class ZeroViaDunder(keras.constraints.Constraint):
        def __call__(self, w):
            return w * 0.0

    kernels = []
    for constraint in (ZeroViaCall(), ZeroViaDunder()):
        layer = keras.layers.Dense(3, kernel_constraint=constraint, kernel_initializer="ones")
        layer.build((None, 2))
        opt = keras.optimizers.SGD(0.0)
        opt.apply_gradients([(tf.zeros((2, 3)), layer.kernel)])
        kernels.append(layer.kernel.numpy())
    np.testing.assert_array_equal(kernels[0], np.ones((2, 3)))
    np.testing.assert_array_equal(kernels[1], np.zeros((2, 3)))


# ---------------------------------------------------------------- self-attention
@pytest.mark.parametrize("channels,params", [(64, 5233), (128, 20705)])
def test_self_attention_shapes_identity_at_gamma_zero_and_counts(rng, channels, params):
    layer = SelfAttention()
    x = rng.normal(size=(2, 16, 16, channels)).astype("float32")
    y, attention = layer(x, training=True, return_attention=True)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y.numpy(), x)  # gamma starts at 0: exact identity
    assert tuple(attention.shape) == (2, 256, 64)
    np.testing.assert_allclose(attention.numpy().sum(-1), 1.0, atol=1e-5)
    assert _counts(layer)[0] == params
    assert _counts(SelfAttention(spectral=False))[0] == 0  # unbuilt: no weights yet


def test_self_attention_gamma_gets_a_gradient_and_then_changes_the_output(rng):
    layer = SelfAttention(spectral=False)
    x = tf.constant(rng.normal(size=(2, 8, 8, 32)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x)))
    grad = tape.gradient(loss, layer.gamma)
    assert abs(float(grad[0])) > 0
    layer.gamma.assign([0.5])
    assert not np.allclose(layer(x).numpy(), x.numpy())


# ---------------------------------------------------------------- conditional BN
def test_conditional_bn_table_mode_uses_each_samples_class(rng):
    cbn = ConditionalBatchNorm(num_classes=10)
    x = (rng.normal(size=(20, 4, 4, 8)) * 3 + 5).astype("float32")
    labels = np.arange(20) % 10
    y = cbn([x, labels], training=True).numpy()
    assert tuple(cbn.gamma.shape) == (10, 8) and tuple(cbn.beta.shape) == (10, 8)
    assert _counts(cbn) == (2 * 10 * 8, 2 * 8)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, atol=1e-3)
    gamma = cbn.gamma.numpy()
    gamma[3] = 2.0
    cbn.gamma.assign(gamma)
    beta = cbn.beta.numpy()
    beta[7] = 1.5
    cbn.beta.assign(beta)
    y2 = cbn([x, labels], training=True).numpy()
    is3, is7 = labels == 3, labels == 7
    np.testing.assert_allclose(y2[is3], 2 * y[is3], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y2[is7], y[is7] + 1.5, rtol=1e-4, atol=1e-5)
    others = ~(is3 | is7)
    np.testing.assert_allclose(y2[others], y[others], rtol=1e-5, atol=1e-6)


def test_conditional_bn_inference_uses_moving_statistics(rng):
    cbn = ConditionalBatchNorm(num_classes=2)
    x = (rng.normal(size=(8, 4, 4, 3)) * 2 + 4).astype("float32")
    labels = np.zeros(8, "int32")
    cbn([x, labels], training=False)
    np.testing.assert_allclose(cbn([x, labels], training=False).numpy(), x / np.sqrt(1 + 1e-5),
                               rtol=1e-5)
    before = cbn.bn.moving_mean.numpy().copy()
    for _ in range(3):
        cbn([x, labels], training=True)
    assert not np.allclose(cbn.bn.moving_mean.numpy(), before)
    assert not np.allclose(cbn([x, labels], training=False).numpy(), x / np.sqrt(1 + 1e-5))


def test_conditional_bn_dense_mode(rng):
    cbn = DenseConditionalBatchNorm(spectral=False)
    x = rng.normal(size=(4, 4, 4, 6)).astype("float32")
    cond = rng.normal(size=(4, 64)).astype("float32")
    y = cbn([x, cond], training=True).numpy()
    cond2 = cond.copy()
    cond2[0] += 1.0
    y2 = cbn([x, cond2], training=True).numpy()
    assert not np.allclose(y2[0], y[0]) and np.allclose(y2[1:], y[1:], atol=1e-6)
    for dense in (cbn.gamma_dense, cbn.beta_dense):
        dense.kernel.assign(np.zeros(dense.kernel.shape, "float32"))
        dense.bias.assign(np.zeros(dense.bias.shape, "float32"))
    plain = cbn.bn(x, training=True).numpy()
    np.testing.assert_allclose(cbn([x, cond], training=True).numpy(), plain, atol=1e-6)


# ---------------------------------------------------------------- losses
def test_orthogonal_regularizer():
    reg = OrthogonalRegularizer(beta=1e-4)
    q = keras.initializers.Orthogonal(seed=0)((3, 3, 16, 32))
    assert float(reg(q)) < 1e-10
    assert float(reg(q * np.linspace(0.5, 3, 32, dtype="float32"))) < 1e-10  # norms free
    w = np.array([[1.0, 2.0], [3.0, 4.0], [0.0, 1.0]], "float32")
    off = w[:, 0] @ w[:, 1]  # = 14
    np.testing.assert_allclose(float(reg(w)), 1e-4 * 2 * off ** 2, rtol=1e-6)
    np.testing.assert_allclose(float(OrthogonalRegularizer(1e-4, squared=False)(w)),
                               1e-4 * np.sqrt(2) * off, rtol=1e-5)
    assert float(reg(np.random.default_rng(0).normal(size=(8, 8)))) > 0
    clone = OrthogonalRegularizer.from_config(reg.get_config())
    assert clone.beta == reg.beta and clone.squared


def test_hinge_losses():
    assert float(hinge_d_loss(np.full(4, 2.0), np.full(4, -2.0))) == 0.0
    assert float(hinge_d_loss(np.zeros(4), np.zeros(4))) == 2.0
    assert float(hinge_g_loss(np.array([1.0, 3.0]))) == -2.0


def test_truncated_z():
    z = truncated_z((4000, 8), 0.5, seed=3).numpy()
    assert np.all(np.abs(z) <= 0.5) and abs(z.mean()) < 0.02 and z.std() > 0.2
    np.testing.assert_array_equal(z, truncated_z((4000, 8), 0.5, seed=3).numpy())


# ---------------------------------------------------------------- networks (book sizes)
def test_sagan_generator_counts_and_output():
    g = build_sagan_generator(spectral=False)
    assert _counts(g) == (2_347_236, 2_176)
    g_sn = build_sagan_generator()
    assert _counts(g_sn) == (2_347_236, 7_587)
    images = g_sn([np.random.default_rng(0).normal(size=(2, 128)).astype("float32"),
                   np.array([1, 2])], training=True).numpy()
    assert images.shape == (2, 32, 32, 3) and np.abs(images).max() <= 1.0


def test_discriminator_counts_and_projection():
    assert _counts(build_sagan_discriminator(spectral=False)) == (2_375_218, 0)
    assert _counts(build_sagan_discriminator(attention_after=2, spectral=False))[0] == 2_390_690
    d = build_sagan_discriminator()
    assert _counts(d) == (2_375_218, 1_969)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    out3, out5 = float(d([x, np.array([3])])[0, 0]), float(d([x, np.array([5])])[0, 0])
    # D(x, y) = psi(h) + <e_y, h>: only the projection term depends on the label.
    h = x
    for block in d.res_blocks:
        h = block(h)
        if block is d.res_blocks[0]:
            h = d.attention(h)
    h = h.numpy().sum(axis=(1, 2))[0]
    e = d.embedding.embeddings.numpy()
    np.testing.assert_allclose(out3 - out5, h @ (e[3] - e[5]), rtol=1e-4, atol=1e-4)


def test_biggan_generator_counts_skip_z_and_condition_size(rng):
    g = build_biggan_generator(spectral=False)
    assert _counts(g) == (2_074_020, 2_176)
    assert _counts(build_biggan_generator())[1] == 9_763
    assert tuple(g.res_blocks[0].cbn1.gamma_dense.kernel.shape) == (64, 256)
    assert len(g.losses) > 0  # orthogonal regularisation of G's kernels
    z = tf.constant(rng.normal(size=(2, 128)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(z)
        first, _ = g._conditions(z, tf.constant([0, 1]))
        dense_out = g.dense(first)
    grad = tape.gradient(dense_out, z).numpy()
    assert np.abs(grad[:, :32]).sum() > 0 and np.all(grad[:, 32:] == 0)


# ---------------------------------------------------------------- training
def _small(biggan=False, spectral=True):
    if biggan:
        g = build_biggan_generator(z_dim=16, dim=8, y_dim=4, spectral=spectral)
    else:
        g = build_sagan_generator(z_dim=16, dim=8, spectral=spectral)
    return g, build_sagan_discriminator(dim=8, spectral=spectral)


def _batch(n=8):
    rng = np.random.default_rng(1)
    return (rng.uniform(-1, 1, (n, 32, 32, 3)).astype("float32"), np.arange(n) % 10)


def test_each_update_changes_only_its_own_network():
    g, d = _small(spectral=False)
    gan = ConditionalHingeGAN(g, d)
    gan.compile()
    images, labels = _batch()
    z = tf.random.normal((8, 16))
    g_before = [v.numpy().copy() for v in g.trainable_variables]
    d_before = [v.numpy().copy() for v in d.weights]
    gan.discriminator_step(tf.constant(images), tf.constant(labels), z)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(g_before, g.trainable_variables))
    assert sum(not np.array_equal(a, v.numpy()) for a, v in zip(d_before, d.weights)) > 10
    d_mid = [v.numpy().copy() for v in d.weights]
    gan.generator_step(tf.constant(labels), z)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(d_mid, d.weights))
    changed = sum(not np.array_equal(a, v.numpy()) for a, v in zip(g_before, g.trainable_variables))
    assert changed > 10
    assert int(gan.d_optimizer.iterations) == 1 and int(gan.g_optimizer.iterations) == 1


def test_train_step_fake_labels_and_ortho_term():
    g, d = _small(biggan=True)
    seen = []
    original_call = g.call

    def spy(inputs, training=False, return_attention=False):
        seen.append(inputs[1])
        return original_call(inputs, training=training, return_attention=return_attention)

    g.call = spy
    gan = ConditionalHingeGAN(g, d)
    gan.compile()
    images, labels = _batch()
    logs = gan.train_step((tf.constant(images), tf.constant(labels)))
    assert len(seen) >= 2 and all(np.array_equal(np.asarray(s), labels) for s in seen)
    assert float(logs["ortho"]) > 0
    assert int(gan.d_optimizer.iterations) == 1 and int(gan.g_optimizer.iterations) == 1
    assert np.isfinite(float(logs["d_loss"])) and "gamma_g" in logs
    # (training with fit, i.e. the traced step, is exercised by the Chapter 8 notebooks)


# ---------------------------------------------------------------- widgets
def test_attention_viewer_and_overlay():
    from common.widgets import AttentionViewer, attention_overlay

    g = build_sagan_generator(z_dim=16, dim=8)
    g.attention.gamma.assign([1.0])
    rng = np.random.default_rng(0)
    for v in g.weights:  # per-class tables start equal (gamma 1, beta 0): make them differ
        if v.path.endswith("/beta"):
            v.assign(rng.normal(size=v.shape).astype("float32"))
    widget = AttentionViewer(g)
    first = widget.current.copy()
    assert first.shape == (32, 65, 3)
    widget.row.value = 2
    assert not np.allclose(widget.current, first)
    widget.label.value = 4
    assert not np.allclose(widget.current[:, :32], first[:, :32])
    attention = np.zeros((256, 64), "float32")
    attention[0, 63] = 1.0
    out = attention_overlay(np.zeros((32, 32, 3)), attention, (0, 0))
    assert out[28:, 28:].mean() > out[8:20, 8:20].mean()  # the attended corner lights up
    np.testing.assert_array_equal(out[0, 0], [0.0, 1.0, 0.0])  # query marked


def test_biggan_sampler_and_class_interpolation_widgets():
    from common.widgets import ClassInterpolation, TruncatedClassSampler

    g = build_biggan_generator(z_dim=16, dim=8, y_dim=4)
    sampler = TruncatedClassSampler(g, n=3, threshold=2.0)
    first = sampler.current.copy()
    sampler.threshold.value = 0.2
    assert not np.allclose(sampler.current, first)
    before = sampler.current.copy()
    sampler.label.value = 7
    assert not np.allclose(sampler.current, before)
    blend = ClassInterpolation(g, class_a=0, class_b=1)
    before = blend.current.copy()
    blend.t.value = 0.9
    assert not np.allclose(blend.current, before)
    np.testing.assert_allclose(blend.current[:, :32], before[:, :32])  # class A panel fixed


# ---------------------------------------------------------------- mixed precision and bad input
@pytest.mark.parametrize("biggan", [False, True], ids=["sagan", "biggan"])
def test_mixed_precision_steps_move_both_networks_like_float32(biggan, precision_check):
    images, labels = _batch()
    z = tf.random.stateless_normal((8, 16), seed=(1, 2))

    def step():
        g, d = _small(biggan=biggan)   # spectral norm on, as trained
        gan = ConditionalHingeGAN(g, d)
        gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
        before = [np.array(w) for net in (g, d) for w in net.trainable_weights]
        d_step, g_step = gan.discriminator_step, gan.generator_step
        if precision_check.xla:
            d_step, g_step = (tf.function(f, jit_compile=True) for f in (d_step, g_step))
        logs = precision_check.until_applied(lambda: d_step(images, labels, z), gan.d_optimizer)
        logs.update(precision_check.until_applied(lambda: g_step(labels, z), gan.g_optimizer))
        return gan, logs, before

    precision_check(step, lambda gan: [gan.generator, gan.discriminator])


def test_spectral_norm_keeps_the_kernels_float32_under_mixed_precision():
    """Keras' wrapper would run the power iteration on a float16 copy of the kernel and write
    W / sigma back rounded to float16 at every training call."""
    images, labels = _batch(2)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        d = build_sagan_discriminator(dim=8)
        d([images, labels], training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    kernels = [w.numpy() for w in d.weights   # (a u of one element is exactly 1.0 after normalising)
               if w.path.endswith(("kernel", "vector_u")) and np.prod(w.shape) > 1]
    assert len(kernels) > 20 and all(k.dtype == np.float32 for k in kernels)
    rounded = [np.array_equal(k, k.astype(np.float16).astype(np.float32)) for k in kernels]
    assert not any(rounded)


def test_self_attention_scores_stay_finite_under_mixed_precision(rng):
    """Query-key products of large activations overflow float16 (max 65,504): NaN attention rows."""
    x = (rng.normal(size=(1, 8, 8, 64)) * 100).astype("float32")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        y, attention = SelfAttention(spectral=False)(x, return_attention=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    attention = np.asarray(attention, np.float32)
    assert np.isfinite(attention).all() and np.isfinite(np.asarray(y, np.float32)).all()
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-2)


def test_conditional_bn_refuses_float_and_out_of_range_labels():
    cbn = ConditionalBatchNorm(num_classes=3)
    x = np.zeros((2, 4, 4, 5), "float32")
    cbn([x, np.array([0, 2])])
    for bad in (np.array([0.7, 2.9]), np.array([0, 3]), np.array([-1, 0])):
        with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\)"):
            cbn([x, bad])
    with pytest.raises(ValueError, match="labels must be integers"):   # in a traced step too
        tf.function(lambda labels: cbn([x, labels], training=True))(tf.constant([0.0, 1.0]))
    g, d = _small(spectral=False)
    images = np.zeros((2, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 10\)"):
        g([np.zeros((2, 16), "float32"), np.array([1, 10])])
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 10\)"):
        d([images, np.array([1.0, 2.0])])


@pytest.mark.parametrize("make, argument", [
    (lambda: power_iteration(np.eye(3, dtype="float32"), n_iter=0), "n_iter"),
    (lambda: SelfAttention(key_reduction=0), "key_reduction"),
    (lambda: SelfAttention(pool=0), "pool"),
    (lambda: SelfAttention()(np.zeros((1, 8, 8, 4), "float32")), "key_reduction"),
    (lambda: ConditionalBatchNorm(0)([np.zeros((2, 4, 4, 3), "float32"), np.zeros(2, "int32")]),
     "num_classes"),
    (lambda: build_sagan_generator(z_dim=0, dim=8), "z_dim"),
    (lambda: build_sagan_generator(z_dim=8, dim=8, num_classes=0), "num_classes"),
    (lambda: build_sagan_discriminator(dim=8, attention_after=0), "attention_after"),
    (lambda: build_biggan_generator(z_dim=16, dim=8, z_chunks=0), "z_chunks"),
    (lambda: build_biggan_generator(z_dim=16, dim=8, z_chunks=8), "z_chunks"),
    (lambda: truncated_z((3, 2), 0.0), "threshold"),
    (lambda: truncated_z((3, 2), -1.0), "threshold"),
], ids=["power_iterations", "key_reduction", "pool", "too_few_channels", "cbn_classes",
        "z_dim", "num_classes", "attention_after", "z_chunks_0", "z_chunks_8", "threshold_0",
        "threshold_negative"])
def test_zero_and_unsupported_sizes_raise_one_value_error_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()
