"""Interactive ipywidgets for the notebooks. Each widget keeps the array it shows in
``.current`` and redraws an ``ipywidgets.Image`` from it, so tests can drive the controls
and check that the picture changes."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from .config import positive
from .viz import to_png_bytes

__all__ = ["ConditionalFaceExplorer", "StepBrowser", "conditional_face_explorer", "step_browser"]

_ANY = "any"


class _Live(widgets.VBox):
    """What every widget below shares: ``image`` shows ``current`` (the array drawn last) as a
    PNG enlarged ``scale`` times, and ``update()`` redraws it whenever a control changes."""

    def __init__(self, scale: int = 2, value_range=None):
        positive(scale=scale)
        super().__init__()
        self.scale, self.value_range, self.current = scale, value_range, None
        self.image = widgets.Image(format="png")

    def _start(self, children, controls=()) -> None:
        """Lay out ``children``, redraw whenever one of ``controls`` changes, and draw once."""
        for control in controls:
            control.observe(lambda _change: self.update(), names="value")
        self.children = tuple(children)
        self.update()

    def _draw(self, array) -> None:
        """Keep ``array`` in ``current`` and show it."""
        self.current = array
        self.image.value = to_png_bytes(array, value_range=self.value_range, scale=self.scale)


def _as_array(images) -> np.ndarray:
    return np.asarray(images.numpy() if hasattr(images, "numpy") else images)


def _signed_to_unit(images) -> np.ndarray:
    """Generator output in [-1, 1] (tensor or array) -> float32 array in [0, 1]."""
    return np.clip((_as_array(images).astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


def _decode_one(decoder, z) -> np.ndarray:
    """Decode one latent vector (z_dim,) to one image (H, W, C) as a numpy array."""
    return _as_array(decoder(np.asarray(z, np.float32)[None], training=False))[0]


def _seed_z(seed: int, n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(int(seed)).standard_normal((n, dim)).astype(np.float32)


def _row(images) -> np.ndarray:
    """Images in [-1, 1] (N, H, W, C) -> one [0, 1] strip, separated by white lines."""
    images = _signed_to_unit(images)
    gap = np.ones((images.shape[1], 1, images.shape[3]), np.float32)
    return np.concatenate(sum(([gap, img] for img in images[1:]), [images[0]]), axis=1)


def _class_count(generator):
    """How many classes a conditional generator draws (its ``num_classes``, or the size of its
    label Embedding / one-hot encoding), or None when it does not say."""
    if getattr(generator, "num_classes", None):
        return int(generator.num_classes)
    for layer in getattr(generator, "layers", []):
        if type(layer).__name__ in ("Embedding", "CategoryEncoding"):
            return int(getattr(layer, "input_dim", None) or layer.num_tokens)
    return None


def _class_menu(generator, class_names=None, num_classes=None, description="class", value=0):
    """A dropdown of the generator's classes. More classes than the generator draws raise
    ValueError: an out-of-range label draws garbage (zeros on a GPU) instead of failing."""
    known = _class_count(generator)
    count = known or 0 if num_classes is None else num_classes
    names = [str(n) for n in (range(count) if class_names is None else class_names)]
    if not 0 < len(names) <= (known or len(names)):
        raise ValueError(f"num_classes / class_names give {len(names)} classes, but this generator "
                         f"draws between 1 and {known} (labels 0 to {(known or 1) - 1})")
    if not 0 <= value < len(names):
        raise ValueError(f"{description}={value!r} is not a class: choose 0 to {len(names) - 1}")
    return widgets.Dropdown(options=[(nm, i) for i, nm in enumerate(names)], value=value,
                            description=description)


class ConditionalFaceExplorer(_Live):
    """Pick attribute conditions (any / True / False for each) and a statistic (mean or
    median); shows the resulting conditional face and how many images it averages.
    `face_fn(images, attributes, conditions, stat=, max_images=) -> (face or None, count)` computes
    the face: Chapter 1's `conditional_face`, as the notebook defines it."""

    def __init__(self, images, attributes, face_fn, attribute_names=None, max_median_images: int = 500,
                 scale: int = 2):
        super().__init__(scale)
        self.images, self.attributes, self.face_fn = images, attributes, face_fn
        self.max_median_images = max_median_images
        self.toggles = {name: widgets.ToggleButtons(options=[_ANY, "True", "False"], value=_ANY, description=name,
                                                    style={"button_width": "48px", "description_width": "150px"})
                        for name in (attribute_names or attributes)}
        self.stat = widgets.ToggleButtons(options=["mean", "median"], value="mean", description="statistic")
        self.message = widgets.Label()
        controls = widgets.VBox([self.stat, *self.toggles.values()],
                                layout=widgets.Layout(max_height="420px", overflow_y="auto"))
        self._start([widgets.HBox([controls, widgets.VBox([self.image, self.message])])],
                    [*self.toggles.values(), self.stat])

    @property
    def conditions(self) -> dict:
        return {name: t.value == "True" for name, t in self.toggles.items() if t.value != _ANY}

    def update(self) -> None:
        """Recompute the face for the current controls and redraw it."""
        face, count = self.face_fn(self.images, self.attributes, self.conditions,
                                   stat=self.stat.value, max_images=self.max_median_images)
        described = ", ".join(f"{k}={v}" for k, v in self.conditions.items()) or "no condition"
        if face is None:
            self.current, self.image.value = None, b""
            self.message.value = f"No image matches {described}: this combination has no samples."
        else:
            self._draw(face)
            self.message.value = f"{self.stat.value} of {count} images with {described}"


class FrameScrubber(_Live):
    """A frame slider over a video, plus optional controls that change how a frame is drawn.

    ``render(i, **values)`` returns the image to show for frame ``i`` and the current
    values of ``controls`` (a dict name -> ipywidget, e.g. a mask dropdown or a blending
    checkbox); without ``render`` the frame itself is shown. Any change re-renders.
    """

    def __init__(self, frames, render=None, controls=None, scale: int = 2,
                 description: str = "frame"):
        super().__init__(scale)
        self.frames = list(frames)
        if not self.frames:
            raise ValueError(f"{type(self).__name__} needs at least one frame")
        self.render = render or (lambda i, **_: self.frames[i])
        self.controls = dict(controls or {})
        self.slider = widgets.IntSlider(min=0, max=len(self.frames) - 1, value=0,
                                        description=description, continuous_update=False)
        self.label = widgets.Label()
        self._start([widgets.HBox([self.slider, *self.controls.values()]), self.label, self.image],
                    [self.slider, *self.controls.values()])

    @property
    def values(self) -> dict:
        """Current value of every control, by name."""
        return {name: c.value for name, c in self.controls.items()}

    def caption(self, i: int) -> str:
        described = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"frame {i + 1} of {len(self.frames)}" + (f" ({described})" if described else "")

    def update(self) -> None:
        """Render the selected frame with the current control values and redraw it."""
        i = self.slider.value
        self._draw(np.asarray(self.render(i, **self.values)))
        self.label.value = self.caption(i)


class StepBrowser(FrameScrubber):
    """A slider over a list of frames (for example snapshots taken while sampling), starting
    at the last one, each shown with its title."""

    def __init__(self, frames, titles=None, scale: int = 4, description: str = "step"):
        frames = [np.asarray(f) for f in frames]
        self.titles = list(titles) if titles is not None else [str(i) for i in range(len(frames))]
        if len(self.titles) != len(frames):
            raise ValueError(f"titles has {len(self.titles)} entries for {len(frames)} frames")
        super().__init__(frames, scale=scale, description=description)
        self.slider.continuous_update, self.slider.value = True, len(frames) - 1

    def caption(self, i: int) -> str:
        return self.titles[i]


conditional_face_explorer = ConditionalFaceExplorer
step_browser = StepBrowser
frame_scrubber = FrameScrubber
__all__ += ["FrameScrubber", "frame_scrubber"]


# --------------------------------------------------------------------------- Chapter 2: latent spaces

class LatentCodeSliders(_Live):
    """One slider per latent dimension; the decoded image is redrawn as a slider moves.
    ``ranges`` is a list of ``(low, high)`` per dimension (MNIST z=2: [(-5, 5), (-5, 5)])."""

    def __init__(self, decoder, ranges=((-5.0, 5.0), (-5.0, 5.0)), step: float = 0.1, scale: int = 6):
        super().__init__(scale)
        self.decoder = decoder
        self.sliders = [widgets.FloatSlider(value=float(np.clip(0.0, lo, hi)), min=lo, max=hi, step=step,
                                            description=f"z{i + 1}", continuous_update=True)
                        for i, (lo, hi) in enumerate(ranges)]
        self._start([widgets.HBox([widgets.VBox(self.sliders), self.image])], self.sliders)

    @property
    def z(self) -> np.ndarray:
        return np.array([s.value for s in self.sliders], np.float32)

    def update(self) -> None:
        """Decode the sliders' code and redraw."""
        self._draw(_decode_one(self.decoder, self.z))


class AttributeEditor(_Live):
    """Edit a face by latent arithmetic: z' = base_z + sum_a w_a * v_a (book Chapter 2).

    One slider per attribute (weight w_a, ``value_range``, step 0.1); the base face is shown
    on the left and the edited face (kept in ``.current``) on the right, redrawn whenever a
    slider moves. "reset" sets every weight to 0; "new random face" replaces ``base_z`` with
    ``new_face()`` (for example the sampling trick) when that callable is given; the
    dropdown adds a slider for any other attribute that has a vector.
    """

    def __init__(self, decoder, base_z, vectors, attributes=None, value_range=(-5.0, 5.0),
                 new_face=None, scale: int = 2):
        super().__init__(scale)
        self.decoder, self.vectors, self.new_face = decoder, dict(vectors), new_face
        self.weight_range, self._updating, self.sliders, self.base = value_range, False, {}, None
        self.slider_box = widgets.VBox()
        self.base_image = widgets.Image(format="png")
        self.reset_button = widgets.Button(description="reset")
        self.new_button = widgets.Button(description="new random face", disabled=new_face is None)
        self.add_dropdown = widgets.Dropdown(options=[], description="add")
        self.reset_button.on_click(lambda _b: self.reset())
        self.new_button.on_click(lambda _b: self.randomize())
        self.add_dropdown.observe(self._on_add, names="value")
        for name in [a for a in (attributes or list(self.vectors)) if a in self.vectors]:
            self.add_attribute(name, redraw=False)
        faces = widgets.HBox([widgets.VBox([widgets.Label("base"), self.base_image]),
                              widgets.VBox([widgets.Label("edited"), self.image])])
        self.children = (widgets.HBox([self.reset_button, self.new_button, self.add_dropdown]),
                         widgets.HBox([self.slider_box, faces]))
        self.set_base(base_z)

    def _refresh_dropdown(self) -> None:
        self.add_dropdown.unobserve(self._on_add, names="value")
        self.add_dropdown.options = [""] + [a for a in self.vectors if a not in self.sliders]
        self.add_dropdown.value = ""
        self.add_dropdown.observe(self._on_add, names="value")

    def _on_add(self, change) -> None:
        if change["new"]:
            self.add_attribute(change["new"])

    def add_attribute(self, name: str, redraw: bool = True) -> None:
        """Add a weight slider for attribute ``name``."""
        if name in self.sliders:
            return
        lo, hi = self.weight_range
        slider = widgets.FloatSlider(value=0.0, min=lo, max=hi, step=0.1, description=name,
                                     continuous_update=False, style={"description_width": "130px"})
        slider.observe(lambda _change: self.update(), names="value")
        self.sliders[name] = slider
        self.slider_box.children = tuple(self.sliders.values())
        self._refresh_dropdown()
        if redraw:
            self.update()

    @property
    def weights(self) -> dict:
        return {name: s.value for name, s in self.sliders.items()}

    def edited_z(self) -> np.ndarray:
        """The edited latent code for the current slider values."""
        z = self.base_z.copy()
        for name, w in self.weights.items():
            z = z + np.float32(w) * np.asarray(self.vectors[name], np.float32)
        return z

    def set_base(self, z) -> None:
        """Use ``z`` as the base face and redraw both images."""
        self.base_z = np.asarray(z, np.float32).reshape(-1)
        self.base = _decode_one(self.decoder, self.base_z)
        self.base_image.value = to_png_bytes(self.base, scale=self.scale)
        self.update()

    def randomize(self) -> None:
        """Draw a new base face with ``new_face()``."""
        if self.new_face is not None:
            self.set_base(self.new_face())

    def reset(self) -> None:
        """All weights back to 0 (the edited face becomes the base face)."""
        self._updating = True
        for s in self.sliders.values():
            s.value = 0.0
        self._updating = False
        self.update()

    def update(self) -> None:
        """Decode the edited code and redraw the right-hand image."""
        if not self._updating:
            self._draw(_decode_one(self.decoder, self.edited_z()))


latent_sliders = LatentCodeSliders
attribute_editor = AttributeEditor
__all__ += ["LatentCodeSliders", "AttributeEditor", "latent_sliders", "attribute_editor"]


# --------------------------------------------------------------------------- Chapter 3: GANs

def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between two latent vectors (White 2016, "Sampling Generative
    Networks"): moves along the great circle, keeping the norm typical of N(0, I) samples."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return (1.0 - t) * a + t * b
    return (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


class LatentInterpolation(_Live):
    """Walk between the latent codes of two seeds: ``G((1 - alpha) z_a + alpha z_b)``, or the
    spherical path with ``mode='slerp'``. Seed boxes pick ``z_a`` and ``z_b`` (N(0, I), or
    U[0, 1) with ``noise='uniform'``); the slider sets alpha in [0, 1]."""

    def __init__(self, generator, z_dim: int, seed_a: int = 0, seed_b: int = 1,
                 noise: str = "normal", scale: int = 4, value_range=(-1, 1)):
        super().__init__(scale, value_range)
        positive(z_dim=z_dim)
        if noise not in ("normal", "uniform"):
            raise ValueError(f"noise must be 'normal' or 'uniform', got {noise!r}")
        self.generator, self.z_dim, self.noise = generator, int(z_dim), noise
        self.seed_a = widgets.IntText(value=seed_a, description="seed A")
        self.seed_b = widgets.IntText(value=seed_b, description="seed B")
        self.alpha = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                         description="alpha", continuous_update=True)
        self.mode = widgets.ToggleButtons(options=["linear", "slerp"], value="linear",
                                          description="path")
        self._start([widgets.HBox([self.seed_a, self.seed_b]), self.alpha, self.mode, self.image],
                    (self.seed_a, self.seed_b, self.alpha, self.mode))

    def latent(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(int(seed))
        return (rng.random if self.noise == "uniform" else rng.standard_normal)(self.z_dim).astype(np.float32)

    def z(self) -> np.ndarray:
        """The latent code for the current controls, shape ``(z_dim,)``."""
        a, b, t = self.latent(self.seed_a.value), self.latent(self.seed_b.value), self.alpha.value
        if self.mode.value == "slerp":
            return _slerp(a, b, t).astype(np.float32)
        return ((1.0 - t) * a + t * b).astype(np.float32)

    def update(self) -> None:
        self._draw(_decode_one(self.generator, self.z()))


latent_interpolation_widget = LatentInterpolation
__all__ += ["LatentInterpolation", "latent_interpolation_widget"]


# --------------------------------------------------------------------------- Chapters 5-6: style and GauGAN

class StyleStrengthExplorer(_Live):
    """A style-strength slider ``alpha`` for a trained :class:`common.ch05.AdaINStyleTransfer`:
    the decoder sees ``alpha * AdaIN(content, style) + (1 - alpha) * content`` features
    (0 = the content reconstructed, 1 = full style). Encodes both images once, decodes on
    every move."""

    def __init__(self, model, content, style, alpha: float = 1.0, scale: int = 2):
        super().__init__(scale, (0, 1))
        self.model = model
        self.content_features = model.encode(np.asarray(content, np.float32)[None])[-1]
        self.style_features = model.encode(np.asarray(style, np.float32)[None])[-1]
        self.slider = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05,
                                          description="alpha", continuous_update=False)
        self._start([self.slider, self.image], [self.slider])

    def update(self) -> None:
        """Decode the blend for the slider's alpha and redraw."""
        mixed = self.model.mix(self.content_features, self.style_features, self.slider.value)
        self._draw(np.asarray(self.model.decode(mixed))[0])


class LatentInterpolator(_Live):
    """Walk the straight line between two latent codes: the slider ``t`` in [0, 1] shows
    ``G((1 - t) z0 + t z1)``, a path on the generator's image manifold (iGAN's morphing)."""

    def __init__(self, generator, z0, z1, scale: int = 6, steps: int = 20):
        super().__init__(scale)
        positive(steps=steps)
        self.generator = generator
        self.z0, self.z1 = np.asarray(z0, np.float32), np.asarray(z1, np.float32)
        self.slider = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=1.0 / steps,
                                          description="t", continuous_update=True)
        self._start([self.slider, self.image], [self.slider])

    def update(self) -> None:
        t = self.slider.value
        self._draw(_decode_one(self.generator, (1.0 - t) * self.z0 + t * self.z1))


class _CellGrid(widgets.GridBox):
    """A ``rows`` x ``cols`` grid of small buttons, a coarse canvas: clicking cell (r, c) calls
    ``on_click(r, c)``; ``paint(r, c, rgb)`` colours a cell (rgb in [0, 1], or None)."""

    def __init__(self, rows: int, cols: int, on_click, size: str = "16px"):
        positive(grid=rows)
        self.cols = cols
        self.cells = [widgets.Button(layout=widgets.Layout(width=size, height=size, padding="0"))
                      for _ in range(rows * cols)]
        for k, cell in enumerate(self.cells):
            cell.on_click(lambda _cell, k=k: on_click(*divmod(k, cols)))
        super().__init__(self.cells, layout=widgets.Layout(
            grid_template_columns=f"repeat({cols}, {size})", grid_gap="1px"))

    def paint(self, r: int, c: int, rgb) -> None:
        self.cells[r * self.cols + c].style.button_color = (
            None if rgb is None else "#" + "".join(f"{int(round(255 * v)):02x}" for v in rgb))


class GauGANExplorer(_Live):
    """Paint with a GauGAN generator: a brush (a class and a coarse grid of cells over the
    segmentation map: click a cell to paint it), a ``seed`` slider for the style code z ~ N(0, I),
    and two class pickers that repaint every pixel of one class as another. Shows the map beside
    the generated image; ``.current`` is the image."""

    def __init__(self, generator, segmap, class_names=None, palette=None, z_dim=None, scale: int = 2,
                 grid: int = 16):
        from common.ch06 import colorize

        super().__init__(scale, (0, 1))
        self._colorize, self.generator, self.palette = colorize, generator, palette
        self.labels = np.asarray(segmap).argmax(-1)
        self.n_classes = np.asarray(segmap).shape[-1]
        self.z_dim = int(z_dim or generator.input_shape[0][-1])
        names = list(class_names or [f"class {k}" for k in range(self.n_classes)])
        self.seed = widgets.IntSlider(value=0, min=0, max=99, description="style seed")
        self.source, self.target, self.brush = (
            widgets.Dropdown(options=[(name, k) for k, name in enumerate(names)], value=0, description=d)
            for d in ("repaint", "as", "brush"))
        self.rows = self.cols = min(grid, *self.labels.shape)
        self.grid = _CellGrid(self.rows, self.cols, self.paint)
        self._start([widgets.HBox([self.seed, self.source, self.target]),
                     widgets.HBox([widgets.VBox([self.brush, self.grid]), self.image])],
                    (self.seed, self.source, self.target))

    def _cell(self, r: int, c: int):
        h, w = self.labels.shape
        return (slice(r * h // self.rows, (r + 1) * h // self.rows),
                slice(c * w // self.cols, (c + 1) * w // self.cols))

    def paint(self, r: int, c: int) -> None:
        """Paint cell (r, c) of the grid with the brush's class and regenerate."""
        self.labels[self._cell(r, c)] = self.brush.value
        self.update()

    @property
    def edited_labels(self) -> np.ndarray:
        labels = self.labels.copy()
        labels[labels == self.source.value] = self.target.value
        return labels

    def update(self) -> None:
        labels = self.edited_labels
        onehot = np.eye(self.n_classes, dtype=np.float32)[labels][None]
        z = np.random.default_rng(self.seed.value).standard_normal((1, self.z_dim)).astype(np.float32)
        image = _as_array(self.generator([z, onehot], training=False))[0]
        colours = self._colorize(labels, self.palette)
        for r in range(self.rows):
            for c in range(self.cols):
                rows, cols = self._cell(r, c)
                self.grid.paint(r, c, colours[(rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2])
        self._draw(np.concatenate([colours, (np.clip(image, -1, 1) + 1.0) / 2.0], axis=1))
        self.current = image


class StrokeEditor(_Live):
    """iGAN's brush (Zhu et al. 2016): click cells of a coarse grid to paint a stroke over G(z)
    (click again to erase), pick its colour (a grey level for one-channel generators) and press
    "apply": :func:`common.ch06.project_to_latent` finds a code near z whose image matches the
    stroke under its mask. Shows before | stroke | after; ``.current`` is the edited image."""

    def __init__(self, generator, z, grid: int = 7, steps: int = 200, anchor_weight: float = 0.01,
                 learning_rate: float = 0.05, scale: int = 6):
        from common.ch06 import project_to_latent, stroke_target

        super().__init__(scale, (-1, 1))
        self._project, self._stroke_target = project_to_latent, stroke_target
        self.generator = generator
        self.options = dict(steps=steps, anchor_weight=anchor_weight, learning_rate=learning_rate)
        self.z = self.z_edit = np.asarray(z, np.float32)
        self.before = _decode_one(generator, self.z)
        self.edited = self.before.copy()
        self.stroke = np.zeros((grid, grid), bool)
        self.ink = (widgets.FloatSlider(value=1.0, min=-1.0, max=1.0, step=0.1, description="grey")
                    if self.before.shape[-1] == 1 else widgets.ColorPicker(value="#ffffff", description="colour"))
        self.grid = _CellGrid(grid, grid, self.toggle)
        self.apply = widgets.Button(description="apply")
        self.apply.on_click(lambda _button: self.run())
        self._start([widgets.HBox([self.grid, widgets.VBox([self.ink, self.apply])]), self.image], [self.ink])

    @property
    def color(self):
        """The stroke's colour in the generator's range [-1, 1]."""
        if isinstance(self.ink, widgets.FloatSlider):
            return self.ink.value
        hex_rgb = self.ink.value.lstrip("#")
        return np.array([int(hex_rgb[i:i + 2], 16) for i in (0, 2, 4)], np.float32) / 127.5 - 1.0

    def toggle(self, r: int, c: int) -> None:
        self.stroke[r, c] = not self.stroke[r, c]
        self.grid.paint(r, c, (1.0, 0.55, 0.0) if self.stroke[r, c] else None)
        self.update()

    def run(self) -> None:
        """Project with the stroke as constraint, starting from and anchored to z."""
        target, mask = self._stroke_target(self.before, self.stroke, self.color)
        if mask.any():
            self.z_edit, self.edited, _ = self._project(self.generator, target, mask=mask,
                                                        z_init=self.z, anchor=self.z, **self.options)
        self.update()

    def update(self) -> None:
        painted, _ = self._stroke_target(self.before, self.stroke, self.color)
        self._draw(np.concatenate([self.before, painted, self.edited], axis=1))
        self.current = self.edited


__all__ += ["StyleStrengthExplorer", "LatentInterpolator", "GauGANExplorer", "StrokeEditor"]


# --------------------------------------------------------------------------------------------
# Chapter 4: conditional generation and image-to-image translation

class ClassPicker(_Live):
    """Pick a class and a noise seed; shows ``generator([z, label])`` of a conditional GAN,
    so one can see the same z drawn as every class, or many z for one class. More classes
    (``num_classes`` or ``class_names``) than the generator draws raise ValueError."""

    def __init__(self, generator, num_classes: int = 10, class_names=None,
                 latent_dim: int | None = None, scale: int = 6, n: int = 1):
        super().__init__(scale, (0, 1))
        positive(n=n)
        self.generator, self.n = generator, int(n)
        self.latent_dim = int(latent_dim or generator.inputs[0].shape[-1])
        self.dropdown = _class_menu(generator, class_names, num_classes)
        self.seed = widgets.IntSlider(min=0, max=999, value=0, description="z seed",
                                      continuous_update=False)
        self._start([widgets.HBox([self.dropdown, self.seed]), self.image], (self.dropdown, self.seed))

    def update(self) -> None:
        z = np.random.default_rng(self.seed.value).standard_normal(
            (self.n, self.latent_dim)).astype(np.float32)
        labels = np.full((self.n, 1), self.dropdown.value, dtype=np.int32)
        images = _signed_to_unit(self.generator([z, labels], training=False))
        self._draw(np.concatenate(list(images), axis=1))  # the n samples side by side


class TranslationBrowser(_Live):
    """Browse test images through one or more translators.

    ``directions`` maps a name (e.g. ``'horse -> zebra'``) to ``(inputs, translate)`` where
    ``inputs`` is an array ``(N, H, W, C)`` in [-1, 1] and ``translate(batch)`` returns the
    translated batch; ``targets`` optionally maps a name to ground truths shown on the
    right. A toggle picks the direction and a slider the image; shows input | output
    [| target]."""

    def __init__(self, directions: dict, targets: dict | None = None, scale: int = 2):
        super().__init__(scale, (0, 1))
        n = min((len(inputs) for inputs, _ in dict(directions).values()), default=0)
        if not n:
            raise ValueError("TranslationBrowser needs at least one direction with at least one image")
        self.directions, self.targets = dict(directions), dict(targets or {})
        self.toggle = widgets.ToggleButtons(options=list(self.directions), description="direction")
        self.index = widgets.IntSlider(min=0, max=n - 1, value=0, description="image",
                                       continuous_update=False)
        self.label = widgets.Label()
        self._start([widgets.HBox([self.toggle, self.index]), self.label, self.image],
                    (self.toggle, self.index))

    def update(self) -> None:
        name, i = self.toggle.value, self.index.value
        inputs, translate = self.directions[name]
        x = np.asarray(inputs[i:i + 1], dtype=np.float32)
        panels, titles = [_signed_to_unit(x)[0], _signed_to_unit(translate(x))[0]], ["input", "output"]
        if name in self.targets:
            panels.append(_signed_to_unit(self.targets[name][i]))
            titles.append("target")
        self._draw(np.concatenate(panels, axis=1))
        self.label.value = f"{name}, image {i}: " + " | ".join(titles)


class LatentSliders(_Live):
    """One slider per latent dimension (range [-3, 3]) and a "random z" button, for a
    generator ``G([image, z])`` such as BicycleGAN's: shows input | G(input, z) live."""

    def __init__(self, generator, image, z_dim: int | None = None, scale: int = 2,
                 seed: int = 0):
        super().__init__(scale, (0, 1))
        self.generator, self._hold = generator, False
        self.input = np.asarray(image, dtype=np.float32)
        self.z_dim = int(z_dim or generator.inputs[1].shape[-1])
        self.rng = np.random.default_rng(seed)
        self.sliders = [widgets.FloatSlider(min=-3.0, max=3.0, step=0.1, value=0.0,
                                            description=f"z[{k}]", continuous_update=False)
                        for k in range(self.z_dim)]
        self.button = widgets.Button(description="random z")
        self.button.on_click(lambda _button: self.randomize())
        self._start([widgets.HBox([widgets.VBox(self.sliders), self.image]), self.button], self.sliders)

    @property
    def z(self) -> np.ndarray:
        return np.array([s.value for s in self.sliders], dtype=np.float32)

    def randomize(self) -> None:
        """Set every slider to a fresh N(0, 1) draw (clipped to [-3, 3]), redraw once."""
        self._hold = True
        for slider, value in zip(self.sliders, np.clip(self.rng.standard_normal(self.z_dim), -3, 3)):
            slider.value = round(float(value), 1)
        self._hold = False
        self.update()

    def update(self) -> None:
        if not self._hold:
            out = self.generator([self.input[None], self.z[None]], training=False)
            self._draw(np.concatenate([_signed_to_unit(self.input), _signed_to_unit(out)[0]], axis=1))


__all__ += ["ClassPicker", "TranslationBrowser", "LatentSliders"]


# --------------------------------------------------------------------------------------------
# Chapters 7-8: StyleGAN style mixing and truncation, SAGAN attention maps, BigGAN classes

class StyleMixer(_Live):
    """StyleGAN style mixing (Karras et al. 2019, sec. 3.1): two seeds A and B and one toggle
    per synthesis block choosing whose style (w) that block uses; the noise comes from one
    fixed seed. Shows A, B and the mix side by side. Coarse blocks (4-8) carry pose and face
    shape, middle ones (16-32) features and hair, fine ones colours and texture."""

    def __init__(self, generator, seed_a: int = 0, seed_b: int = 1, psi: float = 1.0,
                 noise_seed: int = 0, scale: int = 4):
        super().__init__(scale, (0, 1))
        self.generator = generator
        self.seed_a = widgets.IntText(value=seed_a, description="seed A")
        self.seed_b = widgets.IntText(value=seed_b, description="seed B")
        self.toggles = [widgets.ToggleButtons(options=["A", "B"], value="A", description=f"{r}x{r}",
                                              style={"button_width": "40px"})
                        for r in generator.resolutions[:generator.level + 1]]
        self.psi = widgets.FloatSlider(min=0.0, max=1.0, step=0.05, value=psi,
                                       description="psi", continuous_update=False)
        self.noise = generator.make_noise(1, seed=noise_seed)
        controls = [self.seed_a, self.seed_b, self.psi, *self.toggles]
        self._start([widgets.HBox([widgets.VBox(controls), self.image])], controls)

    def update(self) -> None:
        from common.ch07 import truncate

        g = self.generator
        z = np.concatenate([_seed_z(self.seed_a.value, 1, g.z_dim),
                            _seed_z(self.seed_b.value, 1, g.z_dim)])
        ws = truncate(g.styles(z), g.w_avg, self.psi.value, g.truncation_cutoff).numpy()
        from_b = np.array([t.value == "B" for t in self.toggles]
                          + [False] * (g.n_blocks - len(self.toggles)))
        mixed = np.where(from_b[:, None], ws[1], ws[0])[None]
        noise = [np.repeat(n, 3, axis=0) for n in self.noise]
        self._draw(_row(np.clip(g.synthesize(np.concatenate([ws, mixed]), noise), -1, 1)))


class StyleTruncation(_Live):
    """StyleGAN's truncation trick (Karras et al. 2019, appendix B): ``w' = w_avg +
    psi (w - w_avg)`` on the blocks up to the resolution chosen in "apply to" (at first the
    generator's ``truncation_cutoff``: up to 32x32, as in the paper). psi = 1 is the untouched
    sample, 0 the average face, negative values the "anti-face". Shows ``n`` seeds."""

    def __init__(self, generator, seed: int = 0, n: int = 4, psi: float = 0.7,
                 noise_seed: int = 0, scale: int = 4):
        super().__init__(scale, (0, 1))
        positive(n=n)
        self.generator, self.n = generator, int(n)
        self.seed = widgets.IntText(value=seed, description="seed")
        self.psi = widgets.FloatSlider(min=-1.0, max=1.5, step=0.05, value=psi,
                                       description="psi", continuous_update=False)
        options = [(f"blocks <= {r}x{r}", i + 1) for i, r in enumerate(generator.resolutions)]
        self.cutoff = widgets.Dropdown(options=options, value=generator.truncation_cutoff,
                                       description="apply to")
        self.noise = [np.repeat(n, self.n, axis=0) for n in generator.make_noise(1, noise_seed)]
        self._start([widgets.HBox([self.seed, self.cutoff]), self.psi, self.image],
                    (self.seed, self.psi, self.cutoff))

    def update(self) -> None:
        g = self.generator
        images = g.generate(_seed_z(self.seed.value, self.n, g.z_dim), psi=self.psi.value,
                            cutoff=self.cutoff.value, noise=self.noise)
        self._draw(_row(np.clip(images, -1, 1)))


def attention_overlay(image, attention, query, alpha: float = 0.55) -> np.ndarray:
    """One image with an attention row drawn over it as a heat map.

    ``image`` (H, W, 3) in [-1, 1]; ``attention`` (Hq*Wq, Hk*Wk) is a SAGAN attention map
    whose rows are query positions on an Hq x Wq grid and whose columns are key positions
    on the pooled Hk x Wk grid; ``query`` = (row, col) on the query grid. The query's row is
    upsampled to (H, W), coloured with 'inferno' and blended; the query pixel is marked with
    a green square. Returns (H, W, 3) in [0, 1]."""
    import matplotlib

    image = _signed_to_unit(image)
    h, w = image.shape[:2]
    attention = np.asarray(attention)
    gq, gk = int(round(np.sqrt(attention.shape[0]))), int(round(np.sqrt(attention.shape[1])))
    r, c = query
    weights = attention[r * gq + c].reshape(gk, gk)
    weights = weights / max(weights.max(), 1e-12)
    heat = np.kron(weights, np.ones((h // gk, w // gk)))
    coloured = matplotlib.colormaps["inferno"](heat)[..., :3].astype(np.float32)
    out = (1 - alpha) * image + alpha * coloured
    sy, sx = h // gq, w // gq
    out[r * sy:(r + 1) * sy, c * sx:(c + 1) * sx] = (0.0, 1.0, 0.0)
    return np.clip(out, 0.0, 1.0)


class AttentionViewer(_Live):
    """Where does one pixel look? Generates an image of the chosen class and seed with a
    SAGAN/BigGAN generator and shows, for the query position picked with two sliders on the
    attention layer's grid, the attention weights over the image (SAGAN paper, Fig. 1)."""

    def __init__(self, generator, class_names=None, seed: int = 0, scale: int = 8):
        super().__init__(scale, (0, 1))
        self.generator, self._cache = generator, None
        self.label = _class_menu(generator, class_names)
        self.seed = widgets.IntText(value=seed, description="seed")
        grid = generator.attention.h
        self.row = widgets.IntSlider(min=0, max=grid - 1, value=grid // 2, description="query row")
        self.col = widgets.IntSlider(min=0, max=grid - 1, value=grid // 2, description="query col")
        self._start([widgets.HBox([self.label, self.seed]), widgets.HBox([self.row, self.col]), self.image],
                    (self.label, self.seed, self.row, self.col))

    def update(self) -> None:
        key = (self.label.value, self.seed.value)
        if self._cache is None or self._cache[0] != key:
            z = _seed_z(self.seed.value, 1, self.generator.z_dim)
            images, attention = self.generator([z, np.array([self.label.value])], training=False,
                                               return_attention=True)
            self._cache = (key, np.asarray(images)[0], np.asarray(attention)[0])
        _, image, attention = self._cache
        overlay = attention_overlay(image, attention, (self.row.value, self.col.value))
        gap = np.ones((image.shape[0], 1, 3), np.float32)
        self._draw(np.concatenate([_signed_to_unit(image), gap, overlay], axis=1))


class TruncatedClassSampler(_Live):
    """BigGAN's truncation trick (Brock et al. 2019, sec. 3.1) for a class-conditional
    generator: ``n`` samples of one class with z drawn from N(0, I) truncated to
    ``|z_i| <= threshold``. Small thresholds give typical, similar images; large ones
    varied but less reliable images."""

    def __init__(self, generator, class_names=None, seed: int = 0, n: int = 6,
                 threshold: float = 1.0, scale: int = 4):
        super().__init__(scale, (0, 1))
        self.generator = generator
        self.label = _class_menu(generator, class_names)
        self.seed = widgets.IntText(value=seed, description="seed")
        self.n = widgets.IntSlider(min=1, max=12, value=n, description="samples",
                                   continuous_update=False)
        self.threshold = widgets.FloatSlider(min=0.1, max=2.0, step=0.05, value=threshold,
                                             description="truncation", continuous_update=False)
        self._start([widgets.HBox([self.label, self.seed]), widgets.HBox([self.n, self.threshold]),
                     self.image], (self.label, self.seed, self.n, self.threshold))

    def update(self) -> None:
        from common.ch08 import truncated_z

        z = truncated_z((self.n.value, self.generator.z_dim), self.threshold.value,
                        seed=self.seed.value)
        labels = np.full((self.n.value,), self.label.value, np.int32)
        self._draw(_row(self.generator([z, labels], training=False)))


class ClassInterpolation(_Live):
    """Blend two classes with BigGAN's shared embedding: fixed z, embedding
    ``(1 - t) e_a + t e_b``. Shows the two classes and the blend."""

    def __init__(self, generator, class_names=None, class_a: int = 0, class_b: int = 1,
                 seed: int = 0, scale: int = 6):
        super().__init__(scale, (0, 1))
        self.generator = generator
        self.class_a = _class_menu(generator, class_names, description="class A", value=class_a)
        self.class_b = _class_menu(generator, class_names, description="class B", value=class_b)
        self.seed = widgets.IntText(value=seed, description="seed")
        self.t = widgets.FloatSlider(min=0.0, max=1.0, step=0.05, value=0.5, description="t",
                                     continuous_update=False)
        self._start([widgets.HBox([self.class_a, self.class_b, self.seed]), self.t, self.image],
                    (self.class_a, self.class_b, self.seed, self.t))

    def update(self) -> None:
        g = self.generator
        table = np.asarray(g.embedding.embeddings)
        e_a, e_b = table[self.class_a.value], table[self.class_b.value]
        t = self.t.value
        e = np.stack([e_a, (1 - t) * e_a + t * e_b, e_b]).astype(np.float32)
        z = np.repeat(_seed_z(self.seed.value, 1, g.z_dim), 3, axis=0)
        self._draw(_row(g.from_embedding(z, e)))


__all__ += ["StyleMixer", "StyleTruncation", "attention_overlay", "AttentionViewer",
            "TruncatedClassSampler", "ClassInterpolation"]
