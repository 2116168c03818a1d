"""Training models, weight clipping, checkpoints and callbacks for the GAN chapters.

:class:`GAN` is the one adversarial training model of the repository: a ``keras.Model``
subclass with its own ``compile`` and ``train_step``, trained with ``fit`` (progress bar,
history and callbacks for free). The same class trains

- a DCGAN (Radford et al. 2016) with the non-saturating BCE losses (``loss='bce'``);
- a WGAN with weight clipping (Arjovsky et al. 2017: ``loss='wasserstein', lipschitz='clip'``);
- a WGAN-GP (Gulrajani et al. 2017: ``loss='wasserstein', lipschitz='gp'``),

with ``n_critic`` discriminator updates per generator update. :class:`WGAN` only changes the
defaults. Keras 3 cannot freeze the discriminator inside a combined model the way the book
does (it collects trainable variables when the train function is built), so every update
here applies its gradients to exactly one network's ``trainable_variables``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
import keras

from .losses import (
    critic_loss_wasserstein,
    discriminator_loss_bce,
    generator_loss_bce,
    generator_loss_wasserstein,
    gradient_penalty,
)

__all__ = [
    "ClipConstraint",
    "clip_weights",
    "GAN",
    "WGAN",
    "GANCheckpoint",
    "latest_checkpoint",
    "restore_checkpoint",
    "SampleGrid",
]


# --------------------------------------------------------------------------------------------
# Weight clipping (WGAN)

@keras.saving.register_keras_serializable(package="common")
class ClipConstraint(keras.constraints.Constraint):
    """Keep a weight inside ``[-clip_value, clip_value]`` after every optimizer update: the
    crude 1-Lipschitz device of the original WGAN (Arjovsky et al. 2017)."""

    def __init__(self, clip_value: float = 0.01):
        self.clip_value = float(clip_value)

    def __call__(self, w):
        return keras.ops.clip(w, -self.clip_value, self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


def _tf_variable(v):
    return v.value if isinstance(v, keras.Variable) else v


def clip_weights(model, clip_value: float = 0.01) -> None:
    """Clip every **trainable** variable of ``model`` to ``[-clip_value, clip_value]``.

    Batch-norm moving means and variances are not trainable and are left alone (the book's
    loop over ``get_weights()`` clipped them too). Works eagerly, inside a ``tf.function``
    and in a ``tf.distribute`` replica context, where the assignment is made once per
    mirrored variable through the strategy.
    """
    variables = [_tf_variable(v) for v in model.trainable_variables]

    def clip_all(strategy, variables):
        for var in variables:
            strategy.extended.update(
                var, lambda v: v.assign(tf.clip_by_value(v, -clip_value, clip_value)), group=False
            )

    if tf.distribute.in_cross_replica_context():
        clip_all(tf.distribute.get_strategy(), variables)
    else:
        tf.distribute.get_replica_context().merge_call(clip_all, args=(variables,))


# --------------------------------------------------------------------------------------------
# The training model

class GAN(keras.Model):
    """Adversarial training of ``generator`` against ``discriminator`` with ``fit``.

    One ``train_step`` makes ``n_critic`` discriminator updates, each on a different real
    minibatch with fresh noise, then one generator update. Feed ``fit`` batches of
    ``n_critic * B`` images (``B`` per update); they are split by interleaving (row ``i`` goes
    to update ``i % n_critic``), which keeps the minibatches the same when a
    ``tf.distribute`` strategy splits the global batch between replicas. The data may also
    be ``(images, z)`` pairs to fix the noise (then ``z`` has one row per image); drop class
    labels before ``fit``.

    Options: ``loss`` ``'bce'`` (discriminator outputs probabilities, or logits with
    ``from_logits=True``) or ``'wasserstein'`` (a critic with a linear output);
    ``lipschitz`` ``None``, ``'clip'`` (clip the critic's trainable weights to
    ``clip_value`` after each update) or ``'gp'`` (add ``gp_weight`` times the gradient
    penalty); ``noise`` ``'normal'`` (N(0, I)) or ``'uniform'`` (U[0, 1)).

    Distribution: build the networks, the ``GAN`` and the optimizers under
    ``strategy.scope()``. Each replica's loss is a mean over its share of the batch and is
    divided by the number of replicas before differentiation; the optimizer sums the
    replicas' gradients, giving the gradient of the global-batch mean. (Batch norm still
    uses per-replica statistics unless built with ``synchronized=True``.)
    """

    def __init__(self, generator, discriminator, latent_dim: int | None = None, *,
                 loss: str = "bce", n_critic: int = 1, lipschitz: str | None = None,
                 clip_value: float = 0.01, gp_weight: float = 10.0, noise: str = "normal",
                 from_logits: bool = False, name: str = "gan", **kwargs):
        super().__init__(name=name, **kwargs)
        if loss not in ("bce", "wasserstein"):
            raise ValueError(f"loss must be 'bce' or 'wasserstein', got {loss!r}")
        if lipschitz not in (None, "clip", "gp"):
            raise ValueError(f"lipschitz must be None, 'clip' or 'gp', got {lipschitz!r}")
        if noise not in ("normal", "uniform"):
            raise ValueError(f"noise must be 'normal' or 'uniform', got {noise!r}")
        if int(n_critic) < 1:
            raise ValueError("n_critic must be at least 1")
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim or generator.input_shape[-1])
        self.loss_kind, self.n_critic, self.lipschitz = loss, int(n_critic), lipschitz
        self.clip_value, self.gp_weight = float(clip_value), float(gp_weight)
        self.noise, self.from_logits = noise, bool(from_logits)
        if self.loss_kind == "bce":
            names = ["d_loss", "g_loss", "d_acc_real", "d_acc_fake"]
        else:
            names = ["critic_loss", "critic_real", "critic_fake", "g_loss"]
        if lipschitz == "gp":
            names.append("gp")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.built = True  # the two networks are built already; fit must not trace call()

    # -- Keras plumbing ---------------------------------------------------------------------
    def compile(self, d_optimizer=None, g_optimizer=None, d_loss_fn=None, g_loss_fn=None,
                jit_compile=False, **kwargs):
        """Set the two optimizers (RMSprop 3e-4 each when omitted) and, optionally, the loss
        functions ``d_loss_fn(real_out, fake_out)`` and ``g_loss_fn(fake_out)``; the
        defaults follow ``loss``. Both optimizers are built here, so a checkpoint can be
        restored straight after ``compile``."""
        super().compile(optimizer=None, jit_compile=jit_compile, **kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.RMSprop(3e-4)
        self.g_optimizer = g_optimizer or keras.optimizers.RMSprop(3e-4)
        if self.loss_kind == "bce":
            self.d_loss_fn = d_loss_fn or (
                lambda r, f: discriminator_loss_bce(r, f, from_logits=self.from_logits))
            self.g_loss_fn = g_loss_fn or (
                lambda f: generator_loss_bce(f, from_logits=self.from_logits))
        else:
            self.d_loss_fn = d_loss_fn or critic_loss_wasserstein
            self.g_loss_fn = g_loss_fn or generator_loss_wasserstein
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, z, training=False):
        """Generate images from latent codes."""
        return self.generator(z, training=training)

    def get_config(self):
        return {"latent_dim": self.latent_dim, "loss": self.loss_kind, "n_critic": self.n_critic,
                "lipschitz": self.lipschitz, "clip_value": self.clip_value,
                "gp_weight": self.gp_weight, "noise": self.noise, "from_logits": self.from_logits}

    # -- pieces of a step -------------------------------------------------------------------
    def sample_noise(self, n):
        """``n`` latent codes from the training noise distribution."""
        shape = tf.stack([n, self.latent_dim])
        if self.noise == "uniform":
            return tf.random.uniform(shape)
        return tf.random.normal(shape)

    @property
    def _replicas(self) -> float:
        return float(self.distribute_strategy.num_replicas_in_sync)

    def _accuracy(self, outputs, target: float):
        threshold = 0.0 if self.from_logits else 0.5
        predicted = tf.cast(tf.cast(outputs, tf.float32) > threshold, tf.float32)
        return tf.reduce_mean(tf.cast(tf.equal(predicted, target), tf.float32))

    def discriminator_step(self, real, z):
        """One discriminator (critic) update on a real minibatch and noise ``z``; only the
        discriminator's trainable variables change. Returns a dict of scalars."""
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            real_out = self.discriminator(real, training=True)
            fake_out = self.discriminator(fake, training=True)
            d_loss = self.d_loss_fn(real_out, fake_out)
            total = d_loss
            if self.lipschitz == "gp":
                gp = gradient_penalty(self.discriminator, real, fake)
                total = total + self.gp_weight * gp
            scaled = total / self._replicas
        variables = self.discriminator.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.d_optimizer.apply_gradients(zip(grads, variables))
        if self.lipschitz == "clip":
            clip_weights(self.discriminator, self.clip_value)
        if self.loss_kind == "bce":
            out = {"d_loss": d_loss, "d_acc_real": self._accuracy(real_out, 1.0),
                   "d_acc_fake": self._accuracy(fake_out, 0.0)}
        else:
            out = {"critic_loss": d_loss, "critic_real": -tf.reduce_mean(real_out),
                   "critic_fake": tf.reduce_mean(fake_out)}
        if self.lipschitz == "gp":
            out["gp"] = gp
        return out

    def generator_step(self, z):
        """One generator update on noise ``z``: the gradient flows through the discriminator
        but is applied to the generator's trainable variables only."""
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            fake_out = self.discriminator(fake, training=True)
            g_loss = self.g_loss_fn(fake_out)
            scaled = g_loss / self._replicas
        variables = self.generator.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.g_optimizer.apply_gradients(zip(grads, variables))
        return {"g_loss": g_loss}

    def _split(self, tensor):
        """Interleaved split of a batch into ``n_critic`` equal minibatches."""
        if self.n_critic == 1:
            return [tensor]
        shape = tf.shape(tensor)
        grouped = tf.reshape(tensor, tf.concat([[-1, self.n_critic], shape[1:]], axis=0))
        return [grouped[:, k] for k in range(self.n_critic)]

    def train_step(self, data):
        if isinstance(data, (tuple, list)):
            real, z = data[0], (data[1] if len(data) > 1 else None)
        else:
            real, z = data, None
        reals = self._split(real)
        batch = tf.shape(reals[0])[0]
        zs = self._split(z) if z is not None else [None] * self.n_critic
        for real_k, z_k in zip(reals, zs):
            z_k = self.sample_noise(batch) if z_k is None else z_k
            for key, value in self.discriminator_step(real_k, z_k).items():
                self.trackers[key].update_state(value)
        z_g = self.sample_noise(batch) if z is None else zs[0]
        for key, value in self.generator_step(z_g).items():
            self.trackers[key].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


class WGAN(GAN):
    """:class:`GAN` with the Wasserstein defaults: ``loss='wasserstein'``, ``n_critic=5``,
    ``lipschitz='gp'`` (use ``'clip'`` for the original WGAN)."""

    def __init__(self, generator, discriminator, latent_dim=None, *, lipschitz="gp",
                 n_critic: int = 5, name: str = "wgan", **kwargs):
        super().__init__(generator, discriminator, latent_dim, loss="wasserstein",
                         n_critic=n_critic, lipschitz=lipschitz, name=name, **kwargs)


# --------------------------------------------------------------------------------------------
# Checkpoints

_CKPT_PREFIX = "ckpt-"


def _state_variables(gan):
    """Every variable a resumed run needs, by a stable name."""
    groups = {
        "generator": gan.generator.weights,
        "discriminator": gan.discriminator.weights,
        "g_optimizer": gan.g_optimizer.variables,
        "d_optimizer": gan.d_optimizer.variables,
    }
    return {f"{group}/{i:04d}": v for group, vs in groups.items() for i, v in enumerate(vs)}


def save_checkpoint(gan, directory, epoch: int) -> str:
    """Write the weights of both networks and the state of both optimizers (iterations,
    moments) after ``epoch`` completed epochs; returns the file's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {name: keras.ops.convert_to_numpy(v) for name, v in _state_variables(gan).items()}
    path = directory / f"{_CKPT_PREFIX}{int(epoch):05d}.npz"
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    (directory / "latest.json").write_text(json.dumps({"epoch": int(epoch), "path": path.name}))
    return str(path)


def latest_checkpoint(directory):
    """``(path, epoch)`` of the newest checkpoint in ``directory``, or ``(None, 0)``."""
    meta = Path(directory) / "latest.json"
    if not meta.exists():
        return None, 0
    info = json.loads(meta.read_text())
    return str(Path(directory) / info["path"]), int(info["epoch"])


def restore_checkpoint(gan, path_or_directory) -> int:
    """Load a checkpoint into a compiled ``gan`` (networks and optimizers); returns the
    number of completed epochs to pass to ``fit(initial_epoch=...)``, 0 when there is none."""
    path = Path(path_or_directory)
    epoch = None
    if path.suffix != ".npz":  # a directory: its newest checkpoint, if any
        if not path.is_dir():
            return 0
        found, epoch = latest_checkpoint(path)
        if found is None:
            return 0
        path = Path(found)
    with np.load(path) as data:
        variables = _state_variables(gan)
        missing = sorted(set(variables) ^ set(data.files))
        if missing:
            raise ValueError(f"checkpoint {path} does not match this model: {missing[:5]} ...")
        for name, var in variables.items():
            var.assign(data[name])
    if epoch is None:
        epoch = int(path.stem.split("-")[-1])
    return epoch


class GANCheckpoint(keras.callbacks.Callback):
    """Save a resumable checkpoint (both networks and both optimizers) every ``every``
    epochs into ``directory``; keep the newest ``keep`` files. Resume a run with
    ``initial_epoch = restore_checkpoint(gan, directory)`` before ``fit``."""

    def __init__(self, directory, every: int = 1, keep: int = 2):
        super().__init__()
        self.directory, self.every, self.keep = Path(directory), int(every), int(keep)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done % self.every:
            return
        save_checkpoint(self.model, self.directory, done)
        files = sorted(self.directory.glob(f"{_CKPT_PREFIX}*.npz"))
        for old in files[:-self.keep]:
            old.unlink()


# --------------------------------------------------------------------------------------------
# Samples during training

class SampleGrid(keras.callbacks.Callback):
    """Every ``every`` training steps (and once before training) draw the generator on a
    fixed noise batch and keep the images in ``frames`` (with their step numbers in
    ``steps``), so a notebook can plot them or replay them with a widget."""

    def __init__(self, z, every: int = 100, show=None):
        super().__init__()
        self.z = np.asarray(z, dtype="float32")
        self.every, self.show = int(every), show
        self.frames, self.steps = [], []
        self._step = 0

    def _record(self):
        images = keras.ops.convert_to_numpy(self.model.generator(self.z, training=False))
        self.frames.append(images)
        self.steps.append(self._step)
        if self.show is not None:
            self.show(self._step, images)

    def on_train_begin(self, logs=None):
        if not self.steps or self.steps[-1] != self._step:
            self._record()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every == 0:
            self._record()


# --------------------------------------------------------------------------------------------
# Chapter 2: the variational autoencoder

def reconstruction_loss(x, x_hat, kind: str = "mse"):
    """Mean over every pixel and sample of the squared error (``'mse'``, the L2 loss) or of
    the per-pixel binary cross-entropy (``'bce'``, targets in [0, 1], ``x_hat`` probabilities
    clipped to [1e-7, 1 - 1e-7])."""
    x_hat = keras.ops.convert_to_tensor(x_hat)
    x = keras.ops.cast(keras.ops.convert_to_tensor(x), x_hat.dtype)
    if kind == "mse":
        return keras.ops.mean(keras.ops.square(x - x_hat))
    if kind == "bce":
        p = keras.ops.clip(x_hat, 1e-7, 1.0 - 1e-7)
        return -keras.ops.mean(x * keras.ops.log(p) + (1.0 - x) * keras.ops.log(1.0 - p))
    raise ValueError(f"kind must be 'mse' or 'bce', got {kind!r}")


class VAE(keras.Model):
    """Variational autoencoder (Kingma & Welling 2013) trained with ``fit``.

    ``encoder(x)`` must return ``[z, mean, logvar]`` (z drawn with
    :class:`~common.layers.GaussianSampling`) and ``decoder(z)`` an image. Each step computes
    ``loss = rc_loss + kl_weight * kl_loss`` where ``rc_loss`` is
    :func:`reconstruction_loss` (``rc_loss='mse'`` or ``'bce'``) and ``kl_loss`` is the
    closed-form :func:`~common.losses.kl_divergence` of N(mean, exp(logvar)) from N(0, I),
    both averaged over every element as the book does (so its ``kl_weight=0.01`` keeps its
    meaning). Metrics ``loss``, ``rc_loss``, ``kl_loss`` (``val_*`` with validation data).
    Data: images, or ``(input, target)`` pairs. Under a ``tf.distribute`` strategy the loss
    is divided by the number of replicas before the gradient (the optimizer sums them).
    """

    def __init__(self, encoder, decoder, kl_weight: float = 0.01, rc_loss: str = "mse",
                 name: str = "vae", **kwargs):
        super().__init__(name=name, **kwargs)
        if rc_loss not in ("mse", "bce"):
            raise ValueError(f"rc_loss must be 'mse' or 'bce', got {rc_loss!r}")
        self.encoder, self.decoder = encoder, decoder
        self.kl_weight, self.rc_kind = float(kl_weight), rc_loss
        self.trackers = {n: keras.metrics.Mean(name=n) for n in ("loss", "rc_loss", "kl_loss")}
        # encoder and decoder arrive built; mark the wrapper built too, so weights can be
        # saved even though train_step never calls self(x)
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build(self, input_shape=None):
        self.built = True

    def call(self, x, training=False):
        """Reconstruct ``x`` through a sampled latent code."""
        z, _, _ = self.encoder(x, training=training)
        return self.decoder(z, training=training)

    def encode(self, x):
        """The mean of q(z|x): a deterministic latent code."""
        return self.encoder(x, training=False)[1]

    def decode(self, z):
        """Images from latent codes."""
        return self.decoder(z, training=False)

    def compute_vae_losses(self, x, target=None, training: bool = False):
        """``(loss, rc_loss, kl_loss)`` of one batch (``target`` defaults to ``x``)."""
        from .losses import kl_divergence

        target = x if target is None else target
        z, mean, logvar = self.encoder(x, training=training)
        x_hat = self.decoder(z, training=training)
        rc = reconstruction_loss(target, x_hat, self.rc_kind)
        kl = kl_divergence(mean, logvar)
        return rc + self.kl_weight * kl, rc, kl

    @staticmethod
    def _unpack(data):
        if isinstance(data, (tuple, list)):
            return data[0], (data[1] if len(data) > 1 else data[0])
        return data, data

    def _update(self, total, rc, kl):
        for key, value in (("loss", total), ("rc_loss", rc), ("kl_loss", kl)):
            self.trackers[key].update_state(value)
        return {k: t.result() for k, t in self.trackers.items()}

    def train_step(self, data):
        x, target = self._unpack(data)
        replicas = float(self.distribute_strategy.num_replicas_in_sync)
        with tf.GradientTape() as tape:
            total, rc, kl = self.compute_vae_losses(x, target, training=True)
            scaled = total / replicas
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._update(total, rc, kl)

    def test_step(self, data):
        x, target = self._unpack(data)
        return self._update(*self.compute_vae_losses(x, target, training=False))

    def get_config(self):
        return {"kl_weight": self.kl_weight, "rc_loss": self.rc_kind}


def save_best(path, monitor: str = "val_loss", patience: int = 5):
    """Two callbacks: keep the weights of the best epoch in ``path`` (which must end in
    ``.weights.h5`` in Keras 3) and stop after ``patience`` epochs without improvement,
    restoring the best weights. ``mode='min'`` is explicit because Keras 3 cannot guess the
    direction of a custom metric such as ``val_rc_loss``."""
    path = str(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(f"weight files must end in '.weights.h5' in Keras 3, got {path!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return [
        keras.callbacks.ModelCheckpoint(path, monitor=monitor, mode="min", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=patience,
                                      restore_best_weights=True),
    ]


__all__ += ["reconstruction_loss", "VAE", "save_best"]
