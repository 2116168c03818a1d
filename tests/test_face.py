"""The face pipeline of Chapter 9 on real photos (matplotlib's Grace Hopper, scikit-image's
astronaut), the video helpers, PixelShuffle and the DeepFake networks' sizes (spec ch09)."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from common import ch09

PHOTOS = ["grace_hopper", "astronaut"]
# HOG (upsample 1) boxes measured with dlib 20.0.1 (spec ch09 §5.2), (left, top, right, bottom).
HOG_BOXES = {"grace_hopper": (180, 139, 366, 325), "astronaut": (175, 76, 265, 166)}


@pytest.fixture(scope="module")
def located():
    """Best detection and 68 landmarks on each photo (the predictor is loaded once)."""
    out = {}
    for name in PHOTOS:
        img = ch09.sample_photo(name)
        det, landmarks = ch09.locate_face(img)
        out[name] = (img, det, landmarks)
    return out


@pytest.fixture(scope="module")
def clips():
    return {name: ch09.make_synthetic_clip(ch09.sample_face(name), n_frames=16)[0] for name in PHOTOS}


# ----------------------------------------------------------------------------- import


def test_import_needs_neither_face_recognition_nor_pkg_resources():
    code = ("import sys; sys.modules['pkg_resources'] = None; import common.ch09 as f; "
            "f.model_paths(); assert 'face_recognition' not in sys.modules; "
            "assert 'face_recognition_models' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize("name", PHOTOS)
def test_hog_detection_matches_the_measured_box(located, name):
    img, det, _ = located[name]
    assert ch09.iou(det.box, HOG_BOXES[name]) >= 0.8
    found = ch09.default_detector().detect(img)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    if name == "grace_hopper":
        assert len(found) == 1


def test_detector_rejects_float_and_finds_nothing_in_black():
    det = ch09.default_detector()
    assert det.detect(np.zeros((200, 200, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((200, 200, 3), np.float32))


def test_box_conversions_round_trip():
    box = (10, 20, 30, 40)
    assert ch09.css_to_box(ch09.box_to_css(box)) == box
    r = ch09.box_to_rect(box)
    assert (r.left(), r.top(), r.right(), r.bottom()) == box
    img = np.arange(50 * 60).reshape(50, 60)
    assert ch09.crop_box(img, (-5, -5, 10, 10), pad=3).shape == (13, 13)  # clamped, no wrap-around


def test_no_face_raises_one_clear_error():
    with pytest.raises(ch09.NoFaceError, match="no face"):
        ch09.extract_face(np.full((200, 200, 3), 128, np.uint8))


def test_unreadable_files_raise_one_clear_error(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    for bad in (junk, tmp_path / "missing.png"):
        with pytest.raises(ch09.UnreadableFileError, match="cannot read"):
            ch09.read_image(bad)
    video = tmp_path / "junk.mp4"
    video.write_bytes(b"this is not a video either")
    for bad in (video, tmp_path / "missing.mp4"):
        with pytest.raises(FileNotFoundError, match="cannot read"):
            ch09.read_frames(bad)
    empty = tmp_path / "empty.avi"  # a valid container holding no frame
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64))
    writer.release()
    with pytest.raises(ch09.EmptyVideoError, match="no frame"):
        ch09.read_frames(empty)


# ----------------------------------------------------------------------------- landmarks + alignment


@pytest.mark.parametrize("name", PHOTOS)
def test_68_landmarks_inside_the_face_box(located, name):
    _, det, landmarks = located[name]
    assert landmarks.shape == (68, 2)
    l, t, r, b = det.box
    gx, gy = 0.2 * (r - l), 0.2 * (b - t)
    inside = ((landmarks[:, 0] >= l - gx) & (landmarks[:, 0] <= r + gx)
              & (landmarks[:, 1] >= t - gy) & (landmarks[:, 1] <= b + gy))
    assert inside.mean() >= 0.9
    # anatomy: the subject's right eye is on the image's left, the mouth below the nose
    eyes_r, eyes_l = landmarks[36:42].mean(0), landmarks[42:48].mean(0)
    assert eyes_r[0] < eyes_l[0] and landmarks[48:68, 1].mean() > landmarks[30, 1]


def test_mean_face_template_facts():
    assert ch09.MEAN_FACE.shape == (51, 2)
    assert np.allclose(ch09.MEAN_FACE.min(0), (0.000213, 0.018748), atol=1e-6)
    assert np.allclose(ch09.MEAN_FACE.max(0), (0.980040, 0.909281), atol=1e-6)
    assert np.allclose(ch09.MEAN_FACE.mean(0), (0.490127, 0.464424), atol=1e-6)


def test_umeyama_recovers_a_random_similarity(rng):
    src = rng.normal(size=(51, 2)) * 50
    for _ in range(5):
        angle, scale = rng.uniform(-np.pi, np.pi), np.exp(rng.uniform(np.log(0.1), np.log(10)))
        R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        t = rng.uniform(-100, 100, 2)
        dst = scale * src @ R.T + t
        T = ch09.umeyama(src, dst)
        assert np.allclose(T[:2, :2], scale * R, atol=1e-9) and np.allclose(T[:2, 2], t, atol=1e-9)
    # a mirrored point set still gives a proper rotation, never a reflection
    assert np.linalg.det(ch09.umeyama(src, src * [-1, 1])[:2, :2]) > 0
    with pytest.raises(ValueError):
        ch09.umeyama(np.ones((5, 2)), np.zeros((5, 2)))


@pytest.mark.parametrize("name", PHOTOS)
def test_alignment_maps_landmarks_onto_the_template(located, name):
    _, _, landmarks = located[name]
    M = ch09.alignment_matrix(landmarks)
    mapped = landmarks[17:] @ M[:, :2].T + M[:, 2]
    assert mapped.min() >= -0.1 and mapped.max() <= 1.1
    assert np.sqrt(((mapped - ch09.MEAN_FACE) ** 2).sum(1).mean()) <= 0.05
    # same matrix as OpenCV's partial-affine (similarity) fit
    cv_M, _ = cv2.estimateAffinePartial2D(landmarks[17:], ch09.MEAN_FACE)
    assert np.allclose(cv_M, M, atol=1e-6)
    # in the 256-px canvas, eye centres and mouth centre land within 6 px of the template's
    geo = ch09.FaceGeometry()
    C = geo.canvas_matrix(M)
    on_canvas = landmarks @ C[:, :2].T + C[:, 2]
    template = ch09.MEAN_FACE * (geo.canvas - 2 * geo.padding) + geo.padding
    for idx in (range(36, 42), range(42, 48), range(48, 68)):
        got = on_canvas[list(idx)].mean(0)
        want = template[[i - 17 for i in idx]].mean(0)
        assert np.linalg.norm(got - want) < 6.0


@pytest.mark.parametrize("name", PHOTOS)
def test_crop_matrix_round_trip(clips, name):
    frame = clips[name][0]
    fc = ch09.extract_face(frame)
    assert fc.canvas.shape == (256, 256, 3) and fc.crop.shape == (64, 64, 3)
    geo = ch09.FaceGeometry()
    crop_M = geo.crop_matrix(fc.matrix)
    inside = ch09.square_mask(crop_M, frame.shape) > 0.5
    back = ch09.warp_back(fc.crop, crop_M, frame.shape).astype(float)
    err = np.abs(back - frame)[inside].mean()
    shifted = crop_M.copy()
    shifted[:, 2] += 3 * crop_M[:, 0]  # the crop taken 3 image px to the right
    wrong = cv2.warpAffine(frame, shifted, (64, 64), flags=cv2.INTER_AREA)
    err_shifted = np.abs(ch09.warp_back(wrong, crop_M, frame.shape).astype(float) - frame)[inside].mean()
    assert err < 10 and err_shifted >= 2 * err


def test_synthetic_clip_is_found_and_alignment_stabilises_it(clips):
    for name, frames in clips.items():
        assert frames.shape == (16, 256, 256, 3) and frames.dtype == np.uint8
        crops = np.stack([ch09.extract_face(f).crop for f in frames]).astype(float)  # all 16 found
        aligned = np.abs(np.diff(crops, axis=0)).mean()
        small = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in frames])
        raw = np.abs(np.diff(small.astype(float), axis=0)).mean()
        assert aligned < 0.5 * raw, name


# ----------------------------------------------------------------------------- augmentation


def test_random_warp_shapes_range_and_identity(clips):
    canvas = ch09.extract_face(clips["astronaut"][0]).canvas
    warped, target = ch09.random_warp(canvas, np.random.default_rng(1), scale=0.0)
    assert warped.shape == target.shape == (64, 64, 3) and warped.dtype == np.uint8
    assert np.abs(warped.astype(int) - target).max() <= 1
    a = ch09.random_warp(canvas, np.random.default_rng(7))
    b = ch09.random_warp(canvas, np.random.default_rng(7))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.abs(a[0].astype(int) - a[1]).mean() > 2  # noise really deforms
    t = ch09.random_transform(canvas, np.random.default_rng(3))
    assert t.shape == canvas.shape and t.dtype == np.uint8
    w, tg = next(ch09.training_batches([canvas], batch_size=2))
    assert w.shape == (2, 64, 64, 3) and w.dtype == np.float32 and 0 <= w.min() and w.max() <= 1


# ----------------------------------------------------------------------------- masks + blend


def test_masks_and_blend(located, rng):
    img, det, landmarks = located["astronaut"]
    pipe = ch09.SwapPipeline(model=lambda x: x)
    crop_M = ch09.FaceGeometry().crop_matrix(ch09.alignment_matrix(landmarks))
    masks = pipe.masks(crop_M, landmarks, img.shape)
    assert set(np.unique(masks["hull"])) == {0.0, 1.0}
    assert np.all(masks["combined"] <= masks["square"]) and np.all(masks["combined"] <= masks["hull"])
    assert 0 < masks["combined"].sum() < masks["hull"].sum()
    new = rng.integers(0, 256, img.shape, dtype=np.uint8)
    assert np.array_equal(ch09.blend(img, new, np.zeros(img.shape[:2])), img)
    assert np.array_equal(ch09.blend(img, new, np.ones(img.shape[:2])), new)
    soft = ch09.feather(masks["hull"])
    assert 0 <= soft.min() and soft.max() <= 1 and 0 < soft.sum() < masks["hull"].sum()


def test_swap_pipeline_keeps_frames_and_counts_faces(clips, tmp_path):
    frames = clips["astronaut"][:4]
    pipe = ch09.SwapPipeline(model=lambda x: 1.0 - x)  # a visible stand-in for a decoder
    results = pipe.run(list(frames) + [np.zeros_like(frames[0])])
    assert (pipe.found, pipe.missed) == (4, 1)
    assert all(r.frame.shape == frames[0].shape and r.frame.dtype == np.uint8 for r in results)
    assert not np.array_equal(results[0].frame, frames[0]) and not results[-1].frame.any()
    path = ch09.write_video(tmp_path / "swap.mp4", [r.frame for r in results])
    assert len(list(ch09.read_frames(path))) == 5


# ----------------------------------------------------------------------------- video


def test_video_round_trip(clips, tmp_path):
    frames = clips["grace_hopper"][:12]
    path = ch09.write_video(tmp_path / "clip.mp4", frames, fps=25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temp file left
    info = ch09.video_info(path)
    assert (info["count"], info["width"], info["height"]) == (12, 256, 256)
    back = np.stack(list(ch09.read_frames(path)))
    assert back.shape == (12, 256, 256, 3)
    assert np.abs(back.astype(float) - frames).mean() < 8
    assert len(list(ch09.read_frames(path, every=3))) == 4
    assert len(list(ch09.read_frames(path, max_frames=5))) == 5
    # float frames in [0, 1] and odd sizes (cropped to even) are accepted
    odd = ch09.write_video(tmp_path / "odd.mp4", frames[:3, :255, :253] / 255.0)
    assert (ch09.video_info(odd)["width"], ch09.video_info(odd)["height"]) == (252, 254)


def test_write_video_fails_cleanly(clips, tmp_path):
    frames = list(clips["grace_hopper"][:3]) + [np.zeros((100, 100, 3), np.uint8)]
    with pytest.raises(ValueError, match="size"):
        ch09.write_video(tmp_path / "bad.mp4", frames)
    with pytest.raises(ValueError, match="no frames"):
        ch09.write_video(tmp_path / "empty.mp4", [])
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_save_and_load_frames(clips, tmp_path):
    frames = clips["astronaut"][:3]
    paths = ch09.save_frames(frames, tmp_path / "frames")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    assert np.array_equal(ch09.load_frames(tmp_path / "frames"), frames)


# ----------------------------------------------------------------------------- networks


def test_pixel_shuffle_matches_its_definition(rng):
    import keras
    import tensorflow as tf

    from common.ch09 import PixelShuffle

    x = rng.normal(size=(2, 3, 5, 8)).astype(np.float32)
    y = np.asarray(PixelShuffle(2)(x))
    r, c = 2, 8 // 4
    by_definition = x.reshape(2, 3, 5, r, r, c).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 10, c)
    assert np.array_equal(y, by_definition)
    assert np.array_equal(y, tf.nn.depth_to_space(x, 2).numpy())
    assert np.array_equal(tf.nn.space_to_depth(y, 2).numpy(), x)
    # out[y*r+i, x*r+j, ch] = in[y, x, (i*r+j)*C/r^2 + ch]
    assert y[0, 1 * 2 + 1, 3 * 2 + 0, 1] == x[0, 1, 3, (1 * 2 + 0) * c + 1]
    with pytest.raises(ValueError):
        PixelShuffle(2)(np.zeros((1, 2, 2, 6), np.float32))
    layer = PixelShuffle(2)
    layer.build((None, 4, 4, 8))
    assert layer.count_params() == 0 and layer.compute_output_shape((None, 4, 4, 8)) == (None, 8, 8, 2)


def test_deepfake_parameter_counts():
    from common.ch09 import build_deepfake_decoder, build_deepfake_encoder

    enc, dec = build_deepfake_encoder(), build_deepfake_decoder()
    assert enc.count_params() == 55_505_664 and enc.output_shape == (None, 8, 8, 512)
    assert dec.count_params() == 1_553_539 and dec.output_shape == (None, 64, 64, 3)
    assert enc.count_params() + dec.count_params() == 57_059_203
    assert enc.count_params() + 2 * dec.count_params() == 58_612_742
    assert build_deepfake_encoder(upsampler="pixel_shuffle").count_params() == 69_662_976
    assert build_deepfake_decoder(upsampler="pixel_shuffle").count_params() == 6_199_747
    assert build_deepfake_encoder(width_divisor=8).count_params() == 870_496
    assert build_deepfake_decoder(width_divisor=8).count_params() == 24_851


def test_frame_scrubber_rerenders_on_slider_and_controls():
    import ipywidgets

    from common.widgets import FrameScrubber

    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 100, 200)]
    invert = ipywidgets.Checkbox(value=False, description="invert")
    calls = []

    def render(i, invert):
        calls.append((i, invert))
        return 255 - frames[i] if invert else frames[i]

    w = FrameScrubber(frames, render, {"invert": invert})
    assert np.array_equal(w.current, frames[0])
    w.slider.value = 2
    assert np.array_equal(w.current, frames[2]) and "frame 3 of 3" in w.label.value
    invert.value = True
    assert np.array_equal(w.current, 255 - frames[2]) and calls[-1] == (2, True)
    with pytest.raises(ValueError):
        FrameScrubber([])


def test_extract_faces_counts_images_without_faces():
    images = ch09.identity_images("sample_photos", "grace_hopper", max_images=3)
    assert len(images) == 3 and images[0].shape == (256, 256, 3)
    canvases, counts = ch09.extract_faces(images + [np.zeros((120, 120, 3), np.uint8)])
    assert counts == {"kept": 3, "no face": 1, "several faces": 0}
    assert all(c.shape == (256, 256, 3) for c in canvases)


def test_deepfake_smoke_training_lowers_both_losses(clips):
    import tensorflow as tf

    from common.ch09 import DeepFake

    canvases = {n: np.stack(ch09.extract_faces(clips[n][:8])[0]) for n in PHOTOS}
    gen_a = ch09.training_batches(canvases["astronaut"], 8, seed=0)
    gen_b = ch09.training_batches(canvases["grace_hopper"], 8, seed=1)
    spec = tf.TensorSpec((8, 64, 64, 3), tf.float32)
    ds = tf.data.Dataset.from_generator(lambda: zip(gen_a, gen_b),
                                        output_signature=((spec, spec), (spec, spec)))
    model = DeepFake.build_default(width_divisor=8)
    model.compile()  # one optimizer per autoencoder
    nets = (model.encoder, model.decoder_a, model.decoder_b)
    before = [[w.copy() for w in net.get_weights()] for net in nets]
    logs = model.fit(ds, epochs=3, steps_per_epoch=20, shuffle=False, verbose=0).history
    for net, old in zip(nets, before):  # the A and B updates reach all three networks
        assert any(not np.array_equal(a, b) for a, b in zip(old, net.get_weights())), net.name
    first = (logs["loss_a"][0] + logs["loss_b"][0]) / 2
    last = (logs["loss_a"][-1] + logs["loss_b"][-1]) / 2
    assert last <= 0.75 * first, (first, last)
    x = canvases["astronaut"][:2, 96:160, 96:160].astype(np.float32) / 255.0
    swapped = np.asarray(model.swap(x))
    assert swapped.shape == (2, 64, 64, 3)
    assert np.allclose(swapped, np.asarray(model.decoder_b(model.encoder(x))), atol=1e-6)
    # train_on_batch accepts the same ((warped_a, target_a), (warped_b, target_b)) batch
    out = model.train_on_batch(next(zip(gen_a, gen_b)), return_dict=True)
    assert set(out) >= {"loss_a", "loss_b"}


def test_colour_matching_and_seamless_hide_a_tinted_face(clips):
    frame = clips["astronaut"][0]
    fc = ch09.extract_face(frame)
    crop_M = ch09.FaceGeometry().crop_matrix(fc.matrix)
    tinted = np.clip(fc.crop * np.array([1.25, 0.9, 0.8]), 0, 255).astype(np.uint8)
    pipe = ch09.SwapPipeline(model=lambda x: x)
    inside = pipe.masks(crop_M, fc.landmarks, frame.shape)["combined"] > 0.5

    def error(**kw):
        out, _ = pipe.compose(frame, tinted, crop_M, fc.landmarks, **kw)
        assert out.shape == frame.shape and out.dtype == np.uint8
        return np.abs(out.astype(float) - frame)[inside].mean()

    hard = error(feather_px=0, color_match=False)
    assert error(feather_px=3, color_match=True) < 0.5 * hard
    assert error(seamless=True, color_match=False) < 0.5 * hard


# ----------------------------------------------------------------------------- faults and bad input


class _DiskFullWriter:
    """cv2.VideoWriter as it behaves on a full disk: every call succeeds, but the file on disk ends
    up truncated (``drop=False``) or holds only the first two frames (``drop=True``)."""

    real = cv2.VideoWriter

    def __init__(self, path, *args, drop=False):
        self.path, self.drop, self.n = path, drop, 0
        self.writer = self.real(path, *args)

    def isOpened(self):
        return self.writer.isOpened()

    def write(self, frame):
        self.n += 1
        if not self.drop or self.n <= 2:
            self.writer.write(frame)

    def release(self):
        self.writer.release()
        if not self.drop:
            import os

            with open(self.path, "r+b") as f:
                f.truncate(os.path.getsize(self.path) // 2)


@pytest.mark.parametrize("drop", [False, True])
def test_write_video_reads_the_file_back_and_raises_when_the_disk_fills(clips, tmp_path, monkeypatch,
                                                                         drop):
    monkeypatch.setattr(cv2, "VideoWriter", lambda *a: _DiskFullWriter(*a, drop=drop))
    with pytest.raises(OSError, match="read back"):
        ch09.write_video(tmp_path / "full.mp4", clips["astronaut"][:6])
    assert list(tmp_path.iterdir()) == []  # neither the broken file nor a temporary one is left


def test_save_frames_reads_every_png_back(clips, tmp_path, monkeypatch):
    frames = clips["astronaut"][:3]
    monkeypatch.setattr(cv2, "imwrite", lambda path, img: open(path, "wb").close() or True)  # 0 bytes
    with pytest.raises(OSError, match="frame_0001.png"):
        ch09.save_frames(frames, tmp_path / "frames")


@pytest.mark.parametrize("output, problem", [
    (lambda x: np.zeros((len(x), 32, 32, 3), np.float32), r"shape \(32, 32, 3\)"),
    (lambda x: np.full_like(x, np.nan), "NaN"),
])
def test_swap_pipeline_names_the_frame_where_the_model_output_is_bad(clips, output, problem):
    frames = [np.zeros_like(clips["astronaut"][0]), clips["astronaut"][0]]  # no face, then a face
    with pytest.raises(ValueError, match=f"frame 1: the model's face has {problem}"):
        ch09.SwapPipeline(model=output).run(frames)


def test_zero_and_unsupported_sizes_raise_one_clear_value_error(tmp_path):
    frame = np.zeros((8, 8, 3), np.uint8)
    cases = [
        ("grid", lambda: ch09.random_warp(np.zeros((256, 256, 3), np.uint8), np.random.default_rng(0),
                                          grid=1)),                     # ZeroDivisionError before
        ("FaceGeometry", lambda: ch09.FaceGeometry(coverage=0)),       # ZeroDivisionError in crop_matrix
        ("width_divisor", lambda: ch09.build_deepfake_encoder(width_divisor=0)),   # ZeroDivisionError
        ("width_divisor", lambda: ch09.build_deepfake_decoder(width_divisor=128)),  # 0 filters
        ("fps", lambda: ch09.animation_html([frame], fps=0)),          # ZeroDivisionError
        ("frame", lambda: ch09.animation_html([])),                    # IndexError
        ("sample_face", lambda: ch09.sample_face("ada_lovelace")),     # KeyError
        ("n_frames", lambda: ch09.make_synthetic_clip(frame, n_frames=0)),
        ("batch_size", lambda: next(ch09.training_batches(np.zeros((2, 256, 256, 3), np.uint8), 0))),
        ("fps", lambda: ch09.write_video(tmp_path / "v.mp4", [frame], fps=0)),  # blamed the codec
        ("2x2", lambda: ch09.write_video(tmp_path / "v.mp4", [frame[:1, :1]])),  # blamed the codec
        ("mask", lambda: ch09.SwapPipeline(model=None, mask="circle")),  # KeyError when used
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()
    path = ch09.write_video(tmp_path / "ok.mp4", [frame] * 3)
    with pytest.raises(ValueError, match="max_frames"):               # returned one frame
        ch09.read_frames(path, max_frames=0)


def _tiny_deepfake(optimizer=None):
    from common.ch09 import DeepFake

    model = DeepFake.build_default(width_divisor=16)
    model.compile(optimizer and optimizer(), optimizer and optimizer())
    return model


def _face_batch(n=4, seed=0):
    x = np.random.default_rng(seed).random((n, 64, 64, 3)).astype(np.float32)
    return (x, x[:, ::-1]), (x[:, :, ::-1], x)


def test_a_mixed_precision_deepfake_step_moves_the_weights_like_a_float32_step(precision_check):
    """DeepFake built plain optimizers: under mixed_float16 its gradients were not loss-scaled."""
    import keras

    def step():
        model = _tiny_deepfake(lambda: keras.optimizers.SGD(0.5))
        if keras.config.dtype_policy().name == "mixed_float16":
            assert isinstance(model.optimizer_a, keras.optimizers.LossScaleOptimizer)
            assert isinstance(model.optimizer_b, keras.optimizers.LossScaleOptimizer)
        before = [np.array(w) for w in model.trainable_weights]
        return model, model.train_on_batch(_face_batch(), return_dict=True), before

    precision_check(step)


def test_deepfake_checkpoints_resume_networks_optimizers_and_iteration_count(tmp_path):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors(_face_batch()).repeat()
    model = _tiny_deepfake()
    ckpt = ch09.DeepFakeCheckpoint(tmp_path, every=1, keep=2)
    model.fit(ds, epochs=3, steps_per_epoch=2, callbacks=[ckpt], verbose=0)
    assert [p.name for p in ckpt.files()] == ["deepfake-0000004.weights.h5", "deepfake-0000006.weights.h5"]

    resumed = _tiny_deepfake()
    assert ckpt.restore(resumed) == 6                        # fit(initial_epoch=6 // steps) goes on
    for a, b in zip(model.weights + model.optimizer_a.variables + model.optimizer_b.variables,
                    resumed.weights + resumed.optimizer_a.variables + resumed.optimizer_b.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(resumed.optimizer_a.iterations) == 6          # Adam's moments and step count too

    # a file cut short (a crash of the machine) is skipped with its name; a partial write is ignored
    (tmp_path / "deepfake-0000008.weights.h5").write_bytes(b"\x89HDF\r\n" + b"\0" * 64)
    (tmp_path / "partial-deepfake-0000010.weights.h5").write_bytes(b"")
    with pytest.warns(UserWarning, match="deepfake-0000008"):
        assert ckpt.restore(_tiny_deepfake()) == 6

    # weights that are no longer finite never replace a good checkpoint
    before = sorted(p.name for p in tmp_path.iterdir())
    resumed.encoder.trainable_weights[0].assign(np.full(resumed.encoder.trainable_weights[0].shape, np.nan))
    ckpt.set_model(resumed)
    ckpt.params = {"steps": 2}
    with pytest.warns(UserWarning, match="not finite"):
        ckpt.on_epoch_end(5)
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    # checkpoints that fit no model: one clear error rather than a silent fresh start
    with pytest.raises(ValueError, match="loads into this model"):
        ch09.DeepFakeCheckpoint(tmp_path).restore(ch09.DeepFake.build_default(width_divisor=32))
