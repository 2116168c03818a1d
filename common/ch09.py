"""Chapter 9: transitional module (split from the topic modules; to be generated from the notebooks)."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops
import functools
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple
import cv2


@keras.saving.register_keras_serializable(package="common")
class PixelShuffle(keras.layers.Layer):
    """Sub-pixel upsampling: rearrange channels into space, (H, W, C) -> (H*r, W*r, C/r^2).

    out[y*r + i, x*r + j, c] = in[y, x, (i*r + j) * C/r^2 + c], i.e. ``depth_to_space``.
    A convolution to ``r^2 * f`` channels followed by this layer is an upsampling
    convolution without the checkerboard-prone zeros of a transposed convolution. No
    weights. Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an
    Efficient Sub-Pixel Convolutional Neural Network".
    """

    def __init__(self, scale: int = 2, **kwargs):
        super().__init__(**kwargs)
        if int(scale) < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.scale = int(scale)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % (self.scale ** 2):
            raise ValueError(f"PixelShuffle({self.scale}) needs channels divisible by "
                             f"{self.scale ** 2}, got {channels}")

    def call(self, inputs):
        return ops.depth_to_space(inputs, self.scale, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        r = self.scale
        return (b, None if h is None else h * r, None if w is None else w * r,
                None if c is None else c // (r * r))

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale)
        return config


def _deepfake_upsample(x, filters: int, upsampler: str, name: str, activation=True):
    """One 2x upsampling stage: nearest UpSampling2D + 3x3 conv (the book), or a 3x3 conv
    to 4*filters channels + PixelShuffle(2) (the 2017 deepfakes code)."""
    pass

    if upsampler == "upsampling":
        x = keras.layers.UpSampling2D(2, name=f"{name}_up")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
        if activation:
            x = keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)
        return x
    if upsampler == "pixel_shuffle":
        x = keras.layers.Conv2D(4 * filters, 3, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_lrelu")(x)
        return PixelShuffle(2, name=f"{name}_shuffle")(x)
    raise ValueError(f"upsampler must be 'upsampling' or 'pixel_shuffle', got {upsampler!r}")


def build_deepfake_encoder(input_shape=(64, 64, 3), latent_dim: int = 1024,
                           width_divisor: int = 1, upsampler: str = "upsampling",
                           name: str = "encoder") -> keras.Model:
    """The DeepFake encoder shared by both identities (Chapter 9; the 2017 deepfakes code).

    Four stride-2 5x5 convolutions with LeakyReLU(0.1) (128..1024 filters), a linear
    Dense bottleneck of ``latent_dim``, a Dense back to 4x4x1024 and one upsampling stage
    to (8, 8, 512). Filters and ``latent_dim`` are divided by ``width_divisor``.
    With the defaults: 55,505,664 parameters (69,662,976 with ``upsampler='pixel_shuffle'``).
    """
    d = int(width_divisor)
    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = inputs
    for k, f in enumerate((128, 256, 512, 1024), start=1):
        x = keras.Sequential([keras.layers.Conv2D(f // d, 5, strides=2, padding="same"),
                              keras.layers.LeakyReLU(negative_slope=0.1)],
                             name=f"Downsample_{k}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(latent_dim // d, name="latent")(x)
    x = keras.layers.Dense(4 * 4 * 1024 // d)(x)
    x = keras.layers.Reshape((4, 4, 1024 // d))(x)
    # The book ends with a linear 3x3 conv after upsampling; the deepfakes code's
    # pixel-shuffle stage keeps its LeakyReLU.
    x = _deepfake_upsample(x, 512 // d, upsampler, "Upsample_enc", activation=False)
    return keras.Model(inputs, x, name=name)


def build_deepfake_decoder(input_shape=(8, 8, 512), width_divisor: int = 1,
                           upsampler: str = "upsampling", name: str = "decoder") -> keras.Model:
    """A DeepFake decoder (one per identity): three upsampling stages (256, 128, 64
    filters, LeakyReLU 0.1) from (8, 8, 512) to (64, 64, 64), then a 5x5 sigmoid conv to a
    (64, 64, 3) face in [0, 1]. With the defaults: 1,553,539 parameters (6,199,747 with
    ``upsampler='pixel_shuffle'``). ``input_shape`` channels are divided by ``width_divisor``.
    """
    d = int(width_divisor)
    h, w, c = input_shape
    inputs = keras.Input(shape=(h, w, c // d), name="input_layer")
    x = inputs
    for k, f in enumerate((256, 128, 64), start=1):
        x = _deepfake_upsample(x, f // d, upsampler, f"Upsample_{k}")
    outputs = keras.layers.Conv2D(3, 5, padding="same", activation="sigmoid", name="to_rgb")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="common")
class DeepFake(keras.Model):
    """Shared encoder + two decoders (the original DeepFake autoencoder, 2017).

    Autoencoder A = decoder_a(encoder(.)) learns identity A's faces, autoencoder B
    learns B's; the encoder is shared, so it must describe pose and expression in a way
    both decoders understand. ``swap(x)`` = decoder_b(encoder(x)): B's face with A's pose.
    ``train_step`` takes ``((warped_a, target_a), (warped_b, target_b))`` and does the A
    update, then the B update, each with its own optimizer (Keras 3 optimizers are bound
    to the variables they were built with). Metrics: ``loss_a``, ``loss_b`` (MAE).
    """

    def __init__(self, encoder, decoder_a, decoder_b, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder_a, self.decoder_b = encoder, decoder_a, decoder_b
        self.loss_a_tracker = keras.metrics.Mean(name="loss_a")
        self.loss_b_tracker = keras.metrics.Mean(name="loss_b")
        self.built = True  # the three functional sub-models are built already

    @classmethod
    def build_default(cls, width_divisor: int = 1, upsampler: str = "upsampling",
                      latent_dim: int = 1024, **kwargs):
        """Encoder and two decoders from :func:`build_deepfake_encoder` / ``_decoder``."""
        enc = build_deepfake_encoder(latent_dim=latent_dim, width_divisor=width_divisor,
                                     upsampler=upsampler)
        dec_a = build_deepfake_decoder(width_divisor=width_divisor, upsampler=upsampler,
                                       name="decoder_a")
        dec_b = build_deepfake_decoder(width_divisor=width_divisor, upsampler=upsampler,
                                       name="decoder_b")
        return cls(enc, dec_a, dec_b, **kwargs)

    @property
    def variables_a(self):
        return self.encoder.trainable_variables + self.decoder_a.trainable_variables

    @property
    def variables_b(self):
        return self.encoder.trainable_variables + self.decoder_b.trainable_variables

    def compile(self, optimizer_a=None, optimizer_b=None, **kwargs):
        """Two Adam optimizers by default (lr 5e-5, beta_1 0.5, as the book)."""
        super().compile(**kwargs)
        self.optimizer_a = optimizer_a or keras.optimizers.Adam(5e-5, beta_1=0.5, beta_2=0.999)
        self.optimizer_b = optimizer_b or keras.optimizers.Adam(5e-5, beta_1=0.5, beta_2=0.999)
        self.optimizer_a.build(self.variables_a)
        self.optimizer_b.build(self.variables_b)

    @property
    def metrics(self):
        return [self.loss_a_tracker, self.loss_b_tracker]

    def call(self, inputs, training=False):
        return self.decoder_a(self.encoder(inputs, training=training), training=training)

    def reconstruct_b(self, inputs, training=False):
        return self.decoder_b(self.encoder(inputs, training=training), training=training)

    def swap(self, inputs):
        """B's face with the pose and expression of the A faces in ``inputs``."""
        return self.decoder_b(self.encoder(inputs, training=False), training=False)

    def _step(self, warped, target, decoder, optimizer, variables):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            pred = decoder(self.encoder(warped, training=True), training=True)
            loss = keras.ops.mean(keras.ops.abs(keras.ops.cast(target, pred.dtype) - pred))
            # under a tf.distribute strategy the replicas' gradients are summed: scale the
            # per-replica mean so that the update uses the mean over the global batch
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return loss

    def train_step(self, data):
        # fit() on a dataset of ((wa, ta), (wb, tb)) sees it as (x, y); train_on_batch
        # passes (x, None, None): accept both.
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        (warped_a, target_a), (warped_b, target_b) = x if y is None else (x, y)
        loss_a = self._step(warped_a, target_a, self.decoder_a, self.optimizer_a, self.variables_a)
        loss_b = self._step(warped_b, target_b, self.decoder_b, self.optimizer_b, self.variables_b)
        self.loss_a_tracker.update_state(loss_a)
        self.loss_b_tracker.update_state(loss_b)
        return {"loss_a": self.loss_a_tracker.result(), "loss_b": self.loss_b_tracker.result()}


class NoFaceError(ValueError):
    """Raised when the detector finds no face in an image."""


class UnreadableFileError(FileNotFoundError):
    """Raised when an image or video file is missing or cannot be decoded."""


class EmptyVideoError(ValueError):
    """Raised when a video file opens but contains no frame."""


_MODEL_FILES = {
    "landmarks_68": "shape_predictor_68_face_landmarks.dat",
    "landmarks_5": "shape_predictor_5_face_landmarks.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
}


def model_paths() -> dict:
    """Paths of dlib's four model files shipped by ``face_recognition_models``.

    The package is located with ``importlib.util.find_spec`` only, so its ``__init__``
    (which imports the removed ``pkg_resources``) never runs.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UnreadableFileError(
            "dlib's model files are missing: run `pip install face_recognition_models`.")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    paths = {key: str(folder / name) for key, name in _MODEL_FILES.items()}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise UnreadableFileError(
            f"dlib model file {missing[0]} is missing: reinstall it with "
            "`pip install --force-reinstall face_recognition_models`.")
    return paths


class Detection(NamedTuple):
    """A detected face: ``box`` = (left, top, right, bottom) in pixels and the detector's score."""

    box: tuple
    score: float


def css_to_box(css) -> tuple:
    """face_recognition's "css" order (top, right, bottom, left) -> (left, top, right, bottom)."""
    top, right, bottom, left = (int(v) for v in css)
    return (left, top, right, bottom)


def box_to_css(box) -> tuple:
    """(left, top, right, bottom) -> face_recognition's (top, right, bottom, left)."""
    left, top, right, bottom = (int(v) for v in box)
    return (top, right, bottom, left)


def box_to_rect(box):
    """(left, top, right, bottom) -> ``dlib.rectangle``."""
    import dlib

    left, top, right, bottom = (int(v) for v in box)
    return dlib.rectangle(left, top, right, bottom)


def crop_box(img: np.ndarray, box, pad: int = 0) -> np.ndarray:
    """The part of ``img`` inside ``box`` grown by ``pad`` pixels on every side, clamped
    to the image (a box near the border never produces negative, wrapping indices)."""
    h, w = img.shape[:2]
    left, top, right, bottom = (int(v) for v in box)
    left, top = max(0, left - pad), max(0, top - pad)
    right, bottom = min(w, right + pad), min(h, bottom + pad)
    return img[top:bottom, left:right]


def iou(a, b) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _check_uint8_image(img) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)):
        raise ValueError("dlib needs a uint8 RGB (H, W, 3) or grey (H, W) image, "
                         f"got dtype {img.dtype} and shape {img.shape}")
    return np.ascontiguousarray(img)


class FaceDetector:
    """Find faces with dlib: ``method='hog'`` (histogram of oriented gradients + linear SVM,
    Dalal & Triggs 2005; fast) or ``'cnn'`` (max-margin object detection CNN, King 2015;
    more accurate, much slower on a CPU). ``upsample`` enlarges the image that many times
    before searching, to find smaller faces."""

    def __init__(self, method: str = "hog", upsample: int = 1):
        import dlib

        self.method, self.upsample = method, int(upsample)
        if method == "hog":
            self._detector = dlib.get_frontal_face_detector()
        elif method == "cnn":
            self._detector = dlib.cnn_face_detection_model_v1(model_paths()["cnn_detector"])
        else:
            raise ValueError(f"method must be 'hog' or 'cnn', got {method!r}")

    def detect(self, img) -> list:
        """All faces as :class:`Detection`, highest score first."""
        img = _check_uint8_image(img)
        found = []
        if self.method == "hog":
            rects, scores, _ = self._detector.run(img, self.upsample, 0.0)
            for r, s in zip(rects, scores):
                found.append(Detection((r.left(), r.top(), r.right(), r.bottom()), float(s)))
        else:
            for d in self._detector(img, self.upsample):
                r = d.rect
                found.append(Detection((r.left(), r.top(), r.right(), r.bottom()),
                                       float(d.confidence)))
        return sorted(found, key=lambda d: -d.score)

    def detect_one(self, img):
        """The highest-scoring :class:`Detection`, or None when there is no face."""
        found = self.detect(img)
        return found[0] if found else None


class Landmarker:
    """dlib's 68-point shape predictor (Kazemi & Sullivan 2014, trained on iBUG 300-W),
    loaded once. ``landmarker(img, box)`` returns float64 (68, 2) (x, y) pixel positions."""

    def __init__(self, path: str | None = None):
        import dlib

        self._predictor = dlib.shape_predictor(path or model_paths()["landmarks_68"])

    def __call__(self, img, box) -> np.ndarray:
        img = _check_uint8_image(img)
        shape = self._predictor(img, box_to_rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


@functools.lru_cache(maxsize=None)
def default_detector(method: str = "hog", upsample: int = 1) -> FaceDetector:
    """A shared :class:`FaceDetector` (built once per method and upsampling)."""
    return FaceDetector(method, upsample)


@functools.lru_cache(maxsize=None)
def default_landmarker() -> Landmarker:
    """A shared :class:`Landmarker` (the 100 MB predictor is loaded once)."""
    return Landmarker()


#: dlib's 68 points by facial part (0-based). "right" is the subject's right (image left).
LANDMARK_GROUPS = {
    "jaw": range(0, 17),
    "right_brow": range(17, 22),
    "left_brow": range(22, 27),
    "nose_bridge": range(27, 31),
    "lower_nose": range(31, 36),
    "right_eye": range(36, 42),
    "left_eye": range(42, 48),
    "outer_lips": range(48, 60),
    "inner_lips": range(60, 68),
}


# Mean positions of landmarks 17..67 in a unit box: the template that dlib's
# get_face_chip_details (dlib/image_transforms/interpolation.h, Davis E. King,
# Boost Software License 1.0) aligns faces to. The jaw (0..16) is left out: chin shapes vary.
_MEAN_X = [
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
]


_MEAN_Y = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
]


#: (51, 2) template of landmarks 17..67 in the unit square (dlib's mean face).
MEAN_FACE = np.stack([_MEAN_X, _MEAN_Y], axis=1)


def umeyama(src, dst, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform taking points ``src`` onto ``dst`` (Umeyama 1991,
    "Least-squares estimation of transformation parameters between two point patterns").

    Returns the 3x3 homogeneous matrix [[c*R, t], [0, 1]] minimising
    sum ||dst_i - (c*R*src_i + t)||^2 over rotations R (never a reflection), scales c
    (fixed to 1 when ``estimate_scale`` is False) and translations t.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2:
        raise ValueError(f"src and dst must be matching (n, d) arrays, got {src.shape} "
                         f"and {dst.shape}")
    n, d = src.shape
    if len(np.unique(src, axis=0)) < 2:
        raise ValueError("umeyama needs at least two distinct source points")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    src_c, dst_c = src - mu_s, dst - mu_d
    sigma = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(sigma)
    flip = np.ones(d)
    det = np.linalg.det(sigma)
    # reflection guard; for a rank-deficient sigma use the sign of U and V instead
    if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        flip[-1] = -1.0
    rotation = u @ np.diag(flip) @ vt
    var_s = (src_c ** 2).sum() / n
    scale = (s * flip).sum() / var_s if estimate_scale else 1.0
    out = np.eye(d + 1)
    out[:d, :d] = scale * rotation
    out[:d, d] = mu_d - scale * rotation @ mu_s
    return out


def alignment_matrix(landmarks68) -> np.ndarray:
    """2x3 similarity mapping image pixels onto the unit :data:`MEAN_FACE` template,
    fitted (with scale) on landmarks 17..67."""
    landmarks68 = np.asarray(landmarks68, np.float64)
    if landmarks68.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {landmarks68.shape}")
    return umeyama(landmarks68[17:], MEAN_FACE, True)[:2]


@dataclass(frozen=True)
class FaceGeometry:
    """Crop arithmetic shared by face extraction and paste-back.

    The unit template is placed in a ``canvas`` x ``canvas`` aligned image with ``padding``
    pixels on each side; the network sees the central ``coverage`` pixels of that canvas
    resized to ``size``. Because extraction and paste-back use the same
    :meth:`crop_matrix`, any consistent choice works (the book's 200/50 too).
    """

    canvas: int = 256
    padding: int = 48
    coverage: int = 160
    size: int = 64

    def canvas_matrix(self, M) -> np.ndarray:
        """2x3 map from image pixels to the aligned canvas."""
        out = np.array(M, np.float64) * (self.canvas - 2 * self.padding)
        out[:, 2] += self.padding
        return out

    def crop_matrix(self, M) -> np.ndarray:
        """2x3 map from image pixels to the ``size`` x ``size`` network input."""
        out = self.canvas_matrix(M)
        out[:, 2] -= self.canvas / 2 - self.coverage / 2
        return out * (self.size / self.coverage)


class FaceCrop(NamedTuple):
    """Everything extraction learns about one face in one image."""

    box: tuple
    score: float
    landmarks: np.ndarray
    matrix: np.ndarray      # 2x3 image -> unit template
    canvas: np.ndarray      # aligned canvas x canvas image
    crop: np.ndarray        # size x size network input


def locate_face(img, detector: FaceDetector | None = None, landmarker: Landmarker | None = None):
    """Detect the best-scoring face and its 68 landmarks: ``(Detection, (68, 2) array)``.
    Raises :class:`NoFaceError` when there is none."""
    detector = detector or default_detector()
    det = detector.detect_one(img)
    if det is None:
        raise NoFaceError("no face was found in the image (try a larger, frontal face "
                          "or FaceDetector(upsample=2)).")
    return det, (landmarker or default_landmarker())(img, det.box)


def align_face(img, M, geometry: FaceGeometry = FaceGeometry()) -> np.ndarray:
    """The aligned ``canvas`` x ``canvas`` face of ``img`` for the 2x3 alignment matrix ``M``."""
    return cv2.warpAffine(np.asarray(img), geometry.canvas_matrix(M),
                          (geometry.canvas, geometry.canvas), flags=cv2.INTER_LINEAR)


def extract_face(img, geometry: FaceGeometry = FaceGeometry(), detector=None,
                 landmarker=None) -> FaceCrop:
    """Detect, landmark and align the best face of ``img``; raises :class:`NoFaceError`."""
    det, landmarks = locate_face(img, detector, landmarker)
    M = alignment_matrix(landmarks)
    canvas = align_face(img, M, geometry)
    crop = cv2.warpAffine(np.asarray(img), geometry.crop_matrix(M), (geometry.size, geometry.size),
                          flags=cv2.INTER_AREA)
    return FaceCrop(det.box, det.score, landmarks, M, canvas, crop)


def random_transform(img, rng, rotation_range: float = 10, zoom_range: float = 0.05,
                     shift_range: float = 0.05, flip_prob: float = 0.4) -> np.ndarray:
    """Random rotation (degrees), zoom and shift about the centre with replicated borders,
    then a horizontal flip with probability ``flip_prob`` (the 2017 deepfakes code's values)."""
    img = np.asarray(img)
    h, w = img.shape[:2]
    angle = rng.uniform(-rotation_range, rotation_range)
    scale = rng.uniform(1 - zoom_range, 1 + zoom_range)
    tx, ty = rng.uniform(-shift_range, shift_range) * w, rng.uniform(-shift_range, shift_range) * h
    M = cv2.getRotationMatrix2D((w // 2, h // 2), angle, scale)
    M[:, 2] += (tx, ty)
    out = cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < flip_prob:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def random_warp(img, rng, coverage: int = 160, grid: int = 5, scale: float = 5.0,
                size: int = 64):
    """A (warped, target) training pair from an aligned square canvas.

    A ``grid`` x ``grid`` lattice of control points spanning the central ``coverage``
    pixels is jittered with N(0, scale^2) pixel noise and smoothly interpolated into a
    dense ``cv2.remap`` field: the *warped* face is non-rigidly deformed. The *target* is
    the same region under the best similarity transform of the jittered points (Umeyama),
    so the network has to undo the deformation, not the pose. Returns two ``size`` x
    ``size`` images of the input dtype; ``scale=0`` gives identical images.
    """
    img = np.asarray(img)
    h, w = img.shape[:2]
    if h != w:
        raise ValueError(f"random_warp needs a square canvas, got {h}x{w}")
    c = w // 2
    ticks = np.linspace(c - coverage / 2, c + coverage / 2, grid)
    mapx = np.broadcast_to(ticks, (grid, grid)).astype(np.float64)
    mapy = mapx.T
    mapx = mapx + rng.normal(0.0, scale, (grid, grid)) if scale > 0 else mapx.copy()
    mapy = mapy + rng.normal(0.0, scale, (grid, grid)) if scale > 0 else mapy.copy()
    big = int(round(size * grid / (grid - 1)))
    off = (big - size) // 2
    interp_x = cv2.resize(mapx, (big, big))[off:off + size, off:off + size].astype(np.float32)
    interp_y = cv2.resize(mapy, (big, big))[off:off + size, off:off + size].astype(np.float32)
    warped = cv2.remap(img, interp_x, interp_y, cv2.INTER_LINEAR)
    src = np.stack([mapx.ravel(), mapy.ravel()], axis=-1)
    step = size / (grid - 1)
    # Grid nodes sit at pixel positions k*step - 0.5 of the remapped image (pixel-centre
    # convention of cv2.resize); without the -0.5 the target is half a pixel off.
    dst = np.stack(np.meshgrid(np.arange(grid) * step - 0.5, np.arange(grid) * step - 0.5),
                   axis=-1).reshape(-1, 2)
    T = umeyama(src, dst, True)[:2]
    target = cv2.warpAffine(img, T, (size, size), flags=cv2.INTER_LINEAR)
    return warped, target


def training_batches(canvases, batch_size: int, seed: int = 0, transform: bool = True,
                     **warp_kwargs) -> Iterator[tuple]:
    """Endless (warped, target) float32 batches in [0, 1] from aligned canvases: each item
    is a random canvas, :func:`random_transform` (if ``transform``), then :func:`random_warp`."""
    canvases = np.asarray(canvases)
    if len(canvases) == 0:
        raise ValueError("training_batches needs at least one face")
    rng = np.random.default_rng(seed)
    while True:
        pairs = []
        for i in rng.integers(0, len(canvases), batch_size):
            img = random_transform(canvases[i], rng) if transform else canvases[i]
            pairs.append(random_warp(img, rng, **warp_kwargs))
        warped, target = (np.stack(x).astype(np.float32) / 255.0 for x in zip(*pairs))
        yield warped, target


def hull_mask(shape_hw, landmarks) -> np.ndarray:
    """float32 (H, W) mask: 1 inside the convex hull of the landmarks, 0 outside."""
    mask = np.zeros(tuple(shape_hw)[:2], np.float32)
    hull = cv2.convexHull(np.round(np.asarray(landmarks)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask


def warp_back(face, crop_M, frame_shape) -> np.ndarray:
    """Put a network-sized face back into frame coordinates (inverse of the crop matrix);
    pixels outside the face's square are 0."""
    h, w = frame_shape[:2]
    face = np.asarray(face)
    out = np.zeros((h, w) + face.shape[2:], face.dtype)
    return cv2.warpAffine(face, np.asarray(crop_M, np.float64), (w, h), dst=out,
                          flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_TRANSPARENT)


def square_mask(crop_M, frame_shape, size: int = 64) -> np.ndarray:
    """float32 (H, W) mask of the frame pixels covered by the network's square."""
    return warp_back(np.ones((size, size), np.float32), crop_M, frame_shape)


def feather(mask, erode_px: int = 3, sigma: float = 3.0) -> np.ndarray:
    """Soften a mask's edge: erode by ``erode_px`` pixels, then Gaussian blur. Values in [0, 1]."""
    mask = np.asarray(mask, np.float32)
    if erode_px > 0:
        mask = cv2.erode(mask, np.ones((2 * erode_px + 1,) * 2, np.uint8))
    if sigma > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    return np.clip(mask, 0.0, 1.0)


def match_color(src, ref, mask) -> np.ndarray:
    """Give ``src`` the per-channel mean and std of ``ref`` inside ``mask``, in Lab colour
    space (Reinhard et al. 2001, "Color transfer between images"). uint8 RGB in and out."""
    region = np.asarray(mask) > 0.5
    if region.ndim == 3:
        region = region[..., 0]
    if not region.any():
        return np.asarray(src).copy()
    lab_s = cv2.cvtColor(np.asarray(src, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_r = cv2.cvtColor(np.asarray(ref, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    ms, ss = lab_s[region].mean(0), lab_s[region].std(0) + 1e-6
    mr, sr = lab_r[region].mean(0), lab_r[region].std(0)
    out = (lab_s - ms) / ss * sr + mr
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def blend(frame, new, mask) -> np.ndarray:
    """mask * new + (1 - mask) * frame, computed in float32, returned as uint8."""
    mask = np.asarray(mask, np.float32)
    if mask.ndim == 2:
        mask = mask[..., None]
    out = mask * np.asarray(new, np.float32) + (1.0 - mask) * np.asarray(frame, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def seamless_blend(frame, new, mask) -> np.ndarray:
    """Poisson blending (Perez et al. 2003) with ``cv2.seamlessClone``; falls back to
    :func:`blend` when the mask is empty or touches the frame border."""
    binary = (np.asarray(mask) > 0.5).astype(np.uint8)
    if binary.ndim == 3:
        binary = binary[..., 0]
    x, y, w, h = cv2.boundingRect(binary)
    H, W = binary.shape
    if w == 0 or h == 0 or x <= 0 or y <= 0 or x + w >= W or y + h >= H:
        return blend(frame, new, mask)
    center = (x + w // 2, y + h // 2)
    return cv2.seamlessClone(np.asarray(new, np.uint8), np.asarray(frame, np.uint8),
                             binary * 255, center, cv2.NORMAL_CLONE)


class SwapResult(NamedTuple):
    """One processed frame and what happened on the way (fields are None without a face)."""

    frame: np.ndarray
    found: bool
    box: tuple | None = None
    landmarks: np.ndarray | None = None
    face_in: np.ndarray | None = None
    face_out: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass
class SwapPipeline:
    """Per frame: detect -> landmarks -> crop -> ``model`` -> warp back -> mask -> blend.

    ``model`` maps a float32 batch (N, size, size, 3) in [0, 1] to the same shape (for a
    DeepFake: decoder_B(encoder(x))). ``mask`` is 'square', 'hull' or 'combined' (their
    product); ``feather_px`` > 0 softens its edge (a blur of that many pixels inside it),
    ``color_match`` moves the new face's Lab statistics to the frame's, ``seamless`` uses
    Poisson blending. Frames without a face pass unchanged and are counted in ``missed``.
    """

    model: Callable
    detector: FaceDetector | None = None
    landmarker: Landmarker | None = None
    geometry: FaceGeometry = field(default_factory=FaceGeometry)
    mask: str = "combined"
    feather_px: int = 3
    color_match: bool = True
    seamless: bool = False
    found: int = 0
    missed: int = 0

    def masks(self, crop_M, landmarks, frame_shape) -> dict:
        """The 'square', 'hull' and 'combined' masks for one face."""
        square = square_mask(crop_M, frame_shape, self.geometry.size)
        hull = hull_mask(frame_shape, landmarks)
        return {"square": square, "hull": hull, "combined": square * hull}

    def compose(self, frame, face_out, crop_M, landmarks, mask=None, feather_px=None,
                color_match=None, seamless=None):
        """Paste ``face_out`` (size x size, float [0,1] or uint8) into ``frame``; returns
        (new frame, mask used). Keyword arguments override the pipeline's settings."""
        mask = self.mask if mask is None else mask
        feather_px = self.feather_px if feather_px is None else feather_px
        color_match = self.color_match if color_match is None else color_match
        seamless = self.seamless if seamless is None else seamless
        face = np.asarray(face_out)
        if face.dtype != np.uint8:
            face = np.clip(np.rint(face * 255.0), 0, 255).astype(np.uint8)
        new = warp_back(face, crop_M, frame.shape)
        m = self.masks(crop_M, landmarks, frame.shape)[mask]
        if color_match:
            new = match_color(new, frame, m)
        if seamless:
            return seamless_blend(frame, new, m), m
        if feather_px > 0:  # erode by 2 sigma so that the blur stays inside the mask
            m = feather(m, 2 * feather_px, float(feather_px))
        return blend(frame, new, m), m

    def process(self, frame) -> SwapResult:
        """Swap the best face of one uint8 RGB frame (unchanged copy when there is none)."""
        frame = np.asarray(frame)
        try:
            det, landmarks = locate_face(frame, self.detector, self.landmarker)
        except NoFaceError:
            self.missed += 1
            return SwapResult(frame.copy(), False)
        self.found += 1
        crop_M = self.geometry.crop_matrix(alignment_matrix(landmarks))
        size = self.geometry.size
        face_in = cv2.warpAffine(frame, crop_M, (size, size), flags=cv2.INTER_AREA)
        batch = face_in[None].astype(np.float32) / 255.0
        face_out = np.asarray(self.model(batch))[0]
        out, mask = self.compose(frame, face_out, crop_M, landmarks)
        return SwapResult(out, True, det.box, landmarks, face_in, face_out, mask)

    def run(self, frames: Iterable) -> list:
        """:meth:`process` every frame; returns the list of :class:`SwapResult`."""
        return [self.process(f) for f in frames]


def read_image(path) -> np.ndarray:
    """An image file as uint8 RGB; raises :class:`UnreadableFileError`."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if os.path.isfile(path) else None
    if img is None:
        raise UnreadableFileError(f"cannot read an image from {path}: the file is missing "
                                  "or not an image.")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def sample_photo(name: str) -> np.ndarray:
    """A real photo that ships with an installed package, uint8 RGB: ``'grace_hopper'``
    (matplotlib, 600x512) or ``'astronaut'`` (scikit-image, 512x512)."""
    if name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
            data = np.frombuffer(fh.read(), np.uint8)
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if name == "astronaut":
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut())
    raise ValueError(f"unknown sample photo {name!r}: use 'grace_hopper' or 'astronaut'")


# (rows, cols) of a square region around each sample face, for the synthetic clips.
_FACE_REGION = {"astronaut": ((0, 320), (60, 380)), "grace_hopper": ((40, 440), (70, 470))}


def sample_face(name: str, size: int = 256) -> np.ndarray:
    """A square head-and-shoulders region of :func:`sample_photo` resized to ``size``."""
    (r0, r1), (c0, c1) = _FACE_REGION[name]
    return cv2.resize(sample_photo(name)[r0:r1, c0:c1], (size, size), interpolation=cv2.INTER_AREA)


def identity_images(source: str, identity: str | None = None, max_images: int | None = None,
                    every: int = 1, seed: int = 0) -> list:
    """Photos of one person as uint8 RGB arrays, from one of three sources:

    * ``'lfw'``: the person named ``identity`` (e.g. ``'George_W_Bush'``) in TFDS ``lfw``
      (downloaded on first use; :class:`common.data.DatasetUnavailableError` offline);
    * ``'sample_photos'``: frames of a :func:`make_synthetic_clip` of ``identity``
      (``'astronaut'`` or ``'grace_hopper'``), for offline runs;
    * a folder of images or a video file (every ``every``-th frame).
    """
    if source == "lfw":
        from common.data import load

        ds, _ = load("lfw", "train")
        wanted = identity.encode() if isinstance(identity, str) else identity
        images = []
        for example in ds.as_numpy_iterator():
            if example["label"] == wanted:
                images.append(example["image"])
                if max_images and len(images) >= max_images:
                    break
        if not images:
            raise NoFaceError(f"no image of {identity!r} in lfw: names look like 'Colin_Powell'.")
        return images
    if source == "sample_photos":
        n = max_images or 16
        offset = {"astronaut": 0, "grace_hopper": 1}.get(identity, 0)
        return list(make_synthetic_clip(sample_face(identity), n_frames=n, seed=seed + offset)[0])
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp"))
        if not files:
            raise UnreadableFileError(f"no image files in folder {path}.")
        return [read_image(p) for p in files[:max_images]]
    return list(read_frames(path, every=every, max_frames=max_images))


def extract_faces(images, geometry: FaceGeometry = FaceGeometry(), detector=None,
                  landmarker=None):
    """Aligned canvases of the best face in each image, and counts of images kept, without
    a face and with several faces (the best-scoring one is kept)."""
    detector = detector or default_detector()
    canvases, counts = [], {"kept": 0, "no face": 0, "several faces": 0}
    for img in images:
        found = detector.detect(img)
        if not found:
            counts["no face"] += 1
            continue
        if len(found) > 1:
            counts["several faces"] += 1
        landmarks = (landmarker or default_landmarker())(img, found[0].box)
        canvases.append(align_face(img, alignment_matrix(landmarks), geometry))
        counts["kept"] += 1
    return canvases, counts


def _open_capture(path):
    path = str(path)
    if not os.path.isfile(path):
        raise UnreadableFileError(f"cannot read video {path}: the file does not exist.")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise UnreadableFileError(f"cannot read video {path}: OpenCV cannot decode it.")
    return cap


def video_info(path) -> dict:
    """fps, frame count, width and height of a video file (as its header states them)."""
    cap = _open_capture(path)
    try:
        return {"fps": float(cap.get(cv2.CAP_PROP_FPS)),
                "count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
                "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}
    finally:
        cap.release()


def read_frames(path, every: int = 1, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Frames of a video as uint8 RGB arrays: every ``every``-th frame, at most
    ``max_frames``. Raises at once :class:`UnreadableFileError` (missing or undecodable
    file) or :class:`EmptyVideoError` (no frame); the reader stops cleanly at the end of
    the file (it checks every read) and releases the file when done."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    cap = _open_capture(path)
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise EmptyVideoError(f"video {path} contains no frame.")

    def frames():
        try:
            n, frame = 0, first
            while True:
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                n += 1
                if max_frames is not None and n >= max_frames:
                    return
                for _ in range(every - 1):
                    if not cap.grab():
                        return
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
        finally:
            cap.release()

    return frames()


def add_caption(frame, text: str = "SYNTHETIC") -> np.ndarray:
    """A copy of a uint8 RGB frame with ``text`` written in its lower-left corner."""
    out = np.ascontiguousarray(frame).copy()
    h = out.shape[0]
    scale = max(0.35, h / 512)
    y = h - max(4, int(8 * scale))
    cv2.putText(out, text, (5, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (5, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _to_uint8(frame) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.floating):
        return np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    raise ValueError(f"frames must be uint8 or float in [0, 1], got {frame.dtype}")


def write_video(path, frames: Iterable, fps: float = 25, fourcc: str = "mp4v",
                caption: str | None = None) -> str:
    """Write RGB frames (uint8, or float in [0, 1]) to a video file and return its path.

    All frames must have the size of the first (ValueError otherwise); odd sizes are
    cropped to even ones, as codecs need. The file is written under a temporary name and
    renamed at the end, so an error half-way never leaves a truncated video behind.
    ``mp4v`` (MPEG-4 Part 2) works with pip's OpenCV; H.264 (``avc1``) does not.
    ``caption`` (e.g. "SYNTHETIC") is written on every frame.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    writer = None
    try:
        size = None
        count = 0
        for frame in frames:
            frame = _to_uint8(frame)
            if frame.ndim == 2:
                frame = np.repeat(frame[..., None], 3, axis=-1)
            if frame.ndim != 3 or frame.shape[-1] != 3:
                raise ValueError(f"frames must be (H, W, 3) RGB, got shape {frame.shape}")
            if size is None:
                size = frame.shape[:2]
                h, w = size[0] // 2 * 2, size[1] // 2 * 2
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), float(fps), (w, h))
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write {path.suffix} files with fourcc "
                                       f"{fourcc!r}; use 'mp4v' (.mp4) or 'MJPG' (.avi).")
            elif frame.shape[:2] != size:
                raise ValueError(f"frame {count} has size {frame.shape[:2]}, but the video's "
                                 f"first frame has size {size}.")
            frame = frame[:h, :w]
            if caption:
                frame = add_caption(frame, caption)
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
            count += 1
        if count == 0:
            raise ValueError("write_video got no frames to write.")
        writer.release()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.release()
        if os.path.exists(tmp):
            os.remove(tmp)
    return str(path)


def save_frames(frames: Iterable, folder, pattern: str = "frame_%04d.png", start: int = 1) -> list:
    """Write frames as numbered PNG files (from 1, like ffmpeg) and return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames, start):
        p = folder / (pattern % i)
        if not cv2.imwrite(str(p), cv2.cvtColor(_to_uint8(frame), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {p}")
        paths.append(str(p))
    return paths


def load_frames(folder, pattern: str = "*.png") -> np.ndarray:
    """The images of a folder in sorted name order, stacked as (T, H, W, 3) uint8 RGB."""
    paths = sorted(Path(folder).glob(pattern))
    if not paths:
        raise UnreadableFileError(f"no {pattern} files in {folder}.")
    return np.stack([read_image(p) for p in paths])


def make_synthetic_clip(image, n_frames: int = 16, size: int = 256, max_angle: float = 8,
                        max_zoom: float = 0.08, max_shift=(0.06, 0.03), seed: int = 0):
    """A short "video" of a still photo moving smoothly: per frame a small rotation
    (up to ``max_angle`` degrees), zoom (up to ``max_zoom``) and shift (fractions of the
    size in x, y), periodic over the clip, borders reflected. Returns the frames
    (T, size, size, 3) uint8 and the per-frame 2x3 matrices applied to the resized image."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(np.asarray(image), (size, size), interpolation=cv2.INTER_AREA)
    phases = rng.uniform(0, 2 * np.pi, 4)
    frames, matrices = [], []
    for k in range(n_frames):
        t = 2 * np.pi * k / n_frames
        angle = max_angle * np.sin(t + phases[0])
        zoom = 1 + max_zoom * np.sin(t + phases[1])
        M = cv2.getRotationMatrix2D((size / 2, size / 2), angle, zoom)
        M[0, 2] += max_shift[0] * size * np.sin(t + phases[2])
        M[1, 2] += max_shift[1] * size * np.sin(t + phases[3])
        frames.append(cv2.warpAffine(img, M, (size, size), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))
        matrices.append(M)
    return np.stack(frames), np.stack(matrices)


def animation_html(frames, fps: float = 10, scale: float = 3.0) -> str:
    """An HTML/JavaScript player of the frames (matplotlib, no ffmpeg needed)."""
    import matplotlib.pyplot as plt
    from matplotlib import animation

    frames = [_to_uint8(f) for f in frames]
    h, w = frames[0].shape[:2]
    fig = plt.figure(figsize=(scale, scale * h / w))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.axis("off")
    im = ax.imshow(frames[0])
    anim = animation.FuncAnimation(fig, lambda i: (im.set_data(frames[i]),), frames=len(frames),
                                   interval=1000 / fps)
    html = anim.to_jshtml()
    plt.close(fig)
    return html


_GROUP_COLORS = ["tab:gray", "tab:orange", "tab:orange", "tab:blue", "tab:blue", "tab:green",
                 "tab:green", "tab:red", "tab:pink"]


def draw_face(ax, img, box=None, landmarks=None, numbers: bool = False, groups=None):
    """Show ``img`` on a matplotlib axis with the detection box and the landmarks coloured
    by :data:`LANDMARK_GROUPS` (optionally numbered, optionally only some groups)."""
    import matplotlib.patches as patches

    ax.imshow(img)
    ax.axis("off")
    if box is not None:
        l, t, r, b = box
        ax.add_patch(patches.Rectangle((l, t), r - l, b - t, fill=False, color="yellow", lw=1.5))
    if landmarks is not None:
        for (name, idx), color in zip(LANDMARK_GROUPS.items(), _GROUP_COLORS):
            if groups is not None and name not in groups:
                continue
            pts = np.asarray(landmarks)[list(idx)]
            ax.scatter(pts[:, 0], pts[:, 1], s=8, color=color, label=name)
            if numbers:
                for i, (x, y) in zip(idx, pts):
                    ax.text(x + 1, y - 1, str(i), fontsize=5, color="white")
    return ax
