"""Interactive ipywidgets for the notebooks. Each widget keeps the array it shows in
``.current`` and redraws an ``ipywidgets.Image`` from it, so tests can drive the controls
and check that the picture changes."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from .viz import to_png_bytes

__all__ = ["ConditionalFaceExplorer", "StepBrowser", "conditional_face_explorer", "step_browser"]

_ANY = "any"


class ConditionalFaceExplorer(widgets.VBox):
    """Pick attribute conditions (any / True / False for each) and a statistic (mean or
    median); shows the resulting conditional face and how many images it averages.
    `face_fn(images, attributes, conditions, stat=, max_images=) -> (face or None, count)` computes
    the face: Chapter 1's `conditional_face`, as the notebook defines it."""

    def __init__(self, images, attributes, face_fn, attribute_names=None, max_median_images: int = 500,
                 scale: int = 2):
        self.images, self.attributes, self.face_fn = images, attributes, face_fn
        self.max_median_images, self.scale = max_median_images, scale
        names = list(attribute_names or attributes.keys())
        self.toggles = {
            name: widgets.ToggleButtons(options=[_ANY, "True", "False"], value=_ANY,
                                        description=name, style={"button_width": "48px",
                                                                 "description_width": "150px"})
            for name in names
        }
        self.stat = widgets.ToggleButtons(options=["mean", "median"], value="mean",
                                          description="statistic")
        self.image = widgets.Image(format="png")
        self.message = widgets.Label()
        self.current = None
        for control in [*self.toggles.values(), self.stat]:
            control.observe(lambda _change: self.update(), names="value")
        controls = widgets.VBox([self.stat, *self.toggles.values()],
                                layout=widgets.Layout(max_height="420px", overflow_y="auto"))
        super().__init__([widgets.HBox([controls, widgets.VBox([self.image, self.message])])])
        self.update()

    @property
    def conditions(self) -> dict:
        return {name: t.value == "True" for name, t in self.toggles.items() if t.value != _ANY}

    def update(self) -> None:
        """Recompute the face for the current controls and redraw it."""
        face, count = self.face_fn(self.images, self.attributes, self.conditions,
                                   stat=self.stat.value, max_images=self.max_median_images)
        described = ", ".join(f"{k}={v}" for k, v in self.conditions.items()) or "no condition"
        if face is None:
            self.current = None
            self.image.value = b""
            self.message.value = f"No image matches {described}: this combination has no samples."
        else:
            self.current = face
            self.image.value = to_png_bytes(face, scale=self.scale)
            self.message.value = f"{self.stat.value} of {count} images with {described}"


class StepBrowser(widgets.VBox):
    """A slider over a list of frames (for example snapshots taken while sampling)."""

    def __init__(self, frames, titles=None, scale: int = 4, description: str = "step"):
        self.frames = [np.asarray(f) for f in frames]
        if not self.frames:
            raise ValueError("StepBrowser needs at least one frame")
        self.titles = list(titles) if titles is not None else [str(i) for i in range(len(frames))]
        self.scale = scale
        self.slider = widgets.IntSlider(min=0, max=len(self.frames) - 1, value=len(self.frames) - 1,
                                        description=description, continuous_update=True)
        self.image = widgets.Image(format="png")
        self.label = widgets.Label()
        self.current = None
        self.slider.observe(lambda _change: self.update(), names="value")
        super().__init__([self.slider, self.label, self.image])
        self.update()

    def update(self) -> None:
        i = self.slider.value
        self.current = self.frames[i]
        self.image.value = to_png_bytes(self.current, scale=self.scale)
        self.label.value = self.titles[i]


def conditional_face_explorer(images, attributes, face_fn, attribute_names=None, **kwargs):
    """Build a :class:`ConditionalFaceExplorer` that draws faces with `face_fn`."""
    return ConditionalFaceExplorer(images, attributes, face_fn, attribute_names, **kwargs)


def step_browser(frames, titles=None, **kwargs):
    """Build a :class:`StepBrowser`."""
    return StepBrowser(frames, titles, **kwargs)


class FrameScrubber(widgets.VBox):
    """A frame slider over a video, plus optional controls that change how a frame is drawn.

    ``render(i, **values)`` returns the image to show for frame ``i`` and the current
    values of ``controls`` (a dict name -> ipywidget, e.g. a mask dropdown or a blending
    checkbox); without ``render`` the frame itself is shown. Any change re-renders.
    """

    def __init__(self, frames, render=None, controls=None, scale: int = 2,
                 description: str = "frame"):
        self.frames = list(frames)
        if not self.frames:
            raise ValueError("FrameScrubber needs at least one frame")
        self.render = render or (lambda i, **_: self.frames[i])
        self.controls = dict(controls or {})
        self.scale = scale
        self.slider = widgets.IntSlider(min=0, max=len(self.frames) - 1, value=0,
                                        description=description, continuous_update=False)
        self.image = widgets.Image(format="png")
        self.label = widgets.Label()
        self.current = None
        for control in [self.slider, *self.controls.values()]:
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.slider, *self.controls.values()]), self.label,
                          self.image])
        self.update()

    @property
    def values(self) -> dict:
        """Current value of every control, by name."""
        return {name: c.value for name, c in self.controls.items()}

    def update(self) -> None:
        """Render the selected frame with the current control values and redraw it."""
        i = self.slider.value
        self.current = np.asarray(self.render(i, **self.values))
        self.image.value = to_png_bytes(self.current, scale=self.scale)
        described = ", ".join(f"{k}={v}" for k, v in self.values.items())
        self.label.value = f"frame {i + 1} of {len(self.frames)}" + (f" ({described})" if described else "")


def frame_scrubber(frames, render=None, controls=None, **kwargs):
    """Build a :class:`FrameScrubber`."""
    return FrameScrubber(frames, render, controls, **kwargs)


__all__ += ["FrameScrubber", "frame_scrubber"]


# --------------------------------------------------------------------------- Chapter 2: latent spaces

def _decode_one(decoder, z) -> np.ndarray:
    """Decode one latent vector (z_dim,) to one image (H, W, C) as a numpy array."""
    out = decoder(np.asarray(z, np.float32)[None], training=False)
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out)[0]


class LatentCodeSliders(widgets.VBox):
    """One slider per latent dimension; the decoded image is redrawn as a slider moves.
    ``ranges`` is a list of ``(low, high)`` per dimension (MNIST z=2: [(-5, 5), (-5, 5)])."""

    def __init__(self, decoder, ranges, step: float = 0.1, scale: int = 6):
        self.decoder, self.scale = decoder, scale
        self.sliders = [
            widgets.FloatSlider(value=float(np.clip(0.0, lo, hi)), min=lo, max=hi, step=step,
                                description=f"z{i + 1}", continuous_update=True)
            for i, (lo, hi) in enumerate(ranges)
        ]
        self.image = widgets.Image(format="png")
        self.current = None
        for s in self.sliders:
            s.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([widgets.VBox(self.sliders), self.image])])
        self.update()

    @property
    def z(self) -> np.ndarray:
        return np.array([s.value for s in self.sliders], np.float32)

    def update(self) -> None:
        """Decode the sliders' code and redraw."""
        self.current = _decode_one(self.decoder, self.z)
        self.image.value = to_png_bytes(self.current, scale=self.scale)


class AttributeEditor(widgets.VBox):
    """Edit a face by latent arithmetic: z' = base_z + sum_a w_a * v_a (book Chapter 2).

    One slider per attribute (weight w_a, ``value_range``, step 0.1); the base face is shown
    on the left and the edited face (kept in ``.current``) on the right, redrawn whenever a
    slider moves. "reset" sets every weight to 0; "new random face" replaces ``base_z`` with
    ``new_face()`` (for example the sampling trick) when that callable is given; the
    dropdown adds a slider for any other attribute that has a vector.
    """

    def __init__(self, decoder, base_z, vectors, attributes=None, value_range=(-5.0, 5.0),
                 new_face=None, scale: int = 2):
        self.decoder, self.vectors, self.new_face = decoder, dict(vectors), new_face
        self.value_range, self.scale = value_range, scale
        self.base_z = np.asarray(base_z, np.float32).reshape(-1)
        names = [a for a in (attributes or list(self.vectors)) if a in self.vectors]
        self.sliders = {}
        self.slider_box = widgets.VBox()
        self.base_image = widgets.Image(format="png")
        self.image = widgets.Image(format="png")
        self.reset_button = widgets.Button(description="reset")
        self.new_button = widgets.Button(description="new random face",
                                         disabled=new_face is None)
        self.add_dropdown = widgets.Dropdown(options=[], description="add")
        self.reset_button.on_click(lambda _b: self.reset())
        self.new_button.on_click(lambda _b: self.randomize())
        self.add_dropdown.observe(self._on_add, names="value")
        self.current = None
        self.base = None
        for name in names:
            self.add_attribute(name, redraw=False)
        buttons = widgets.HBox([self.reset_button, self.new_button, self.add_dropdown])
        faces = widgets.HBox([widgets.VBox([widgets.Label("base"), self.base_image]),
                              widgets.VBox([widgets.Label("edited"), self.image])])
        super().__init__([buttons, widgets.HBox([self.slider_box, faces])])
        self.set_base(self.base_z)

    def _refresh_dropdown(self) -> None:
        rest = [a for a in self.vectors if a not in self.sliders]
        self.add_dropdown.unobserve(self._on_add, names="value")
        self.add_dropdown.options = [""] + rest
        self.add_dropdown.value = ""
        self.add_dropdown.observe(self._on_add, names="value")

    def _on_add(self, change) -> None:
        if change["new"]:
            self.add_attribute(change["new"])

    def add_attribute(self, name: str, redraw: bool = True) -> None:
        """Add a weight slider for attribute ``name``."""
        if name in self.sliders:
            return
        lo, hi = self.value_range
        slider = widgets.FloatSlider(value=0.0, min=lo, max=hi, step=0.1, description=name,
                                     continuous_update=False,
                                     style={"description_width": "130px"})
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
        try:
            for s in self.sliders.values():
                s.value = 0.0
        finally:
            self._updating = False
        self.update()

    def update(self) -> None:
        """Decode the edited code and redraw the right-hand image."""
        if getattr(self, "_updating", False):
            return
        self.current = _decode_one(self.decoder, self.edited_z())
        self.image.value = to_png_bytes(self.current, scale=self.scale)


def latent_sliders(decoder, ranges=((-5.0, 5.0), (-5.0, 5.0)), **kwargs):
    """Build a :class:`LatentCodeSliders` (default: two dimensions over [-5, 5])."""
    return LatentCodeSliders(decoder, ranges, **kwargs)


def attribute_editor(decoder, base_z, vectors, attributes=None, value_range=(-5.0, 5.0), **kwargs):
    """Build an :class:`AttributeEditor`."""
    return AttributeEditor(decoder, base_z, vectors, attributes, value_range, **kwargs)


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


class LatentInterpolation(widgets.VBox):
    """Walk between the latent codes of two seeds: ``G((1 - alpha) z_a + alpha z_b)``, or the
    spherical path with ``mode='slerp'``. Seed boxes pick ``z_a`` and ``z_b`` (N(0, I), or
    U[0, 1) with ``noise='uniform'``); the slider sets alpha in [0, 1]."""

    def __init__(self, generator, z_dim: int, seed_a: int = 0, seed_b: int = 1,
                 noise: str = "normal", scale: int = 4, value_range=(-1, 1)):
        self.generator, self.z_dim, self.noise = generator, int(z_dim), noise
        self.scale, self.value_range = scale, value_range
        self.seed_a = widgets.IntText(value=seed_a, description="seed A")
        self.seed_b = widgets.IntText(value=seed_b, description="seed B")
        self.alpha = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                         description="alpha", continuous_update=True)
        self.mode = widgets.ToggleButtons(options=["linear", "slerp"], value="linear",
                                          description="path")
        self.image = widgets.Image(format="png")
        self.current = None
        for control in (self.seed_a, self.seed_b, self.alpha, self.mode):
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.seed_a, self.seed_b]), self.alpha, self.mode,
                          self.image])
        self.update()

    def latent(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(int(seed))
        if self.noise == "uniform":
            return rng.random(self.z_dim).astype(np.float32)
        return rng.standard_normal(self.z_dim).astype(np.float32)

    def z(self) -> np.ndarray:
        """The latent code for the current controls, shape ``(z_dim,)``."""
        a, b, t = self.latent(self.seed_a.value), self.latent(self.seed_b.value), self.alpha.value
        if self.mode.value == "slerp":
            return _slerp(a, b, t).astype(np.float32)
        return ((1.0 - t) * a + t * b).astype(np.float32)

    def update(self) -> None:
        out = self.generator(self.z()[None], training=False)
        self.current = np.asarray(out.numpy() if hasattr(out, "numpy") else out)[0]
        self.image.value = to_png_bytes(self.current, value_range=self.value_range, scale=self.scale)


def latent_interpolation_widget(generator, z_dim: int, seed_a: int = 0, seed_b: int = 1, **kwargs):
    """Build a :class:`LatentInterpolation`."""
    return LatentInterpolation(generator, z_dim, seed_a, seed_b, **kwargs)


__all__ += ["LatentInterpolation", "latent_interpolation_widget"]


# --------------------------------------------------------------------------- Chapters 5-6: style and GauGAN

class StyleStrengthExplorer(widgets.VBox):
    """A style-strength slider ``alpha`` for a trained :class:`common.ch05.AdaINStyleTransfer`:
    the decoder sees ``alpha * AdaIN(content, style) + (1 - alpha) * content`` features
    (0 = the content reconstructed, 1 = full style). Encodes both images once, decodes on
    every move."""

    def __init__(self, model, content, style, alpha: float = 1.0, scale: int = 2):
        self.model, self.scale = model, scale
        content = np.asarray(content, np.float32)[None]
        style = np.asarray(style, np.float32)[None]
        self.content_features = model.encode(content)[-1]
        self.style_features = model.encode(style)[-1]
        self.slider = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05,
                                          description="alpha", continuous_update=False)
        self.image = widgets.Image(format="png")
        self.current = None
        self.slider.observe(lambda _change: self.update(), names="value")
        super().__init__([self.slider, self.image])
        self.update()

    def update(self) -> None:
        """Decode the blend for the slider's alpha and redraw."""
        mixed = self.model.mix(self.content_features, self.style_features, self.slider.value)
        self.current = np.asarray(self.model.decode(mixed))[0]
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)


class LatentInterpolator(widgets.VBox):
    """Walk the straight line between two latent codes: the slider ``t`` in [0, 1] shows
    ``G((1 - t) z0 + t z1)``, a path on the generator's image manifold (iGAN's morphing)."""

    def __init__(self, generator, z0, z1, scale: int = 6, steps: int = 20):
        self.generator, self.scale = generator, scale
        self.z0, self.z1 = np.asarray(z0, np.float32), np.asarray(z1, np.float32)
        self.slider = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=1.0 / steps,
                                          description="t", continuous_update=True)
        self.image = widgets.Image(format="png")
        self.current = None
        self.slider.observe(lambda _change: self.update(), names="value")
        super().__init__([self.slider, self.image])
        self.update()

    def update(self) -> None:
        t = self.slider.value
        self.current = _decode_one(self.generator, (1.0 - t) * self.z0 + t * self.z1)
        self.image.value = to_png_bytes(self.current, scale=self.scale)


class _CellGrid(widgets.GridBox):
    """A ``rows`` x ``cols`` grid of small buttons, a coarse canvas: clicking cell (r, c) calls
    ``on_click(r, c)``; ``paint(r, c, rgb)`` colours a cell (rgb in [0, 1], or None)."""

    def __init__(self, rows: int, cols: int, on_click, size: str = "16px"):
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


class GauGANExplorer(widgets.VBox):
    """Paint with a GauGAN generator: a brush (a class and a coarse grid of cells over the
    segmentation map: click a cell to paint it), a ``seed`` slider for the style code z ~ N(0, I),
    and two class pickers that repaint every pixel of one class as another. Shows the map beside
    the generated image; ``.current`` is the image."""

    def __init__(self, generator, segmap, class_names=None, palette=None, z_dim=None, scale: int = 2,
                 grid: int = 16):
        from common.ch06 import colorize

        self._colorize = colorize
        self.generator, self.palette, self.scale = generator, palette, scale
        self.labels = np.asarray(segmap).argmax(-1)
        self.n_classes = np.asarray(segmap).shape[-1]
        self.z_dim = int(z_dim or generator.input_shape[0][-1])
        names = list(class_names or [f"class {k}" for k in range(self.n_classes)])
        options = [(name, k) for k, name in enumerate(names)]
        self.seed = widgets.IntSlider(value=0, min=0, max=99, description="style seed")
        self.source = widgets.Dropdown(options=options, value=0, description="repaint")
        self.target = widgets.Dropdown(options=options, value=0, description="as")
        self.brush = widgets.Dropdown(options=options, value=0, description="brush")
        self.rows = self.cols = min(grid, *self.labels.shape)
        self.grid = _CellGrid(self.rows, self.cols, self.paint)
        self.image = widgets.Image(format="png")
        self.current = None
        for control in (self.seed, self.source, self.target):
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.seed, self.source, self.target]),
                          widgets.HBox([widgets.VBox([self.brush, self.grid]), self.image])])
        self.update()

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
        out = self.generator([z, onehot], training=False)
        self.current = np.asarray(out.numpy() if hasattr(out, "numpy") else out)[0]
        colours = self._colorize(labels, self.palette)
        for r in range(self.rows):
            for c in range(self.cols):
                rows, cols = self._cell(r, c)
                self.grid.paint(r, c, colours[(rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2])
        shown = np.concatenate([colours, (np.clip(self.current, -1, 1) + 1.0) / 2.0], axis=1)
        self.image.value = to_png_bytes(shown, value_range=(0, 1), scale=self.scale)


class StrokeEditor(widgets.VBox):
    """iGAN's brush (Zhu et al. 2016): click cells of a coarse grid to paint a stroke over G(z)
    (click again to erase), pick its colour (a grey level for one-channel generators) and press
    "apply": :func:`common.ch06.project_to_latent` finds a code near z whose image matches the
    stroke under its mask. Shows before | stroke | after; ``.current`` is the edited image."""

    def __init__(self, generator, z, grid: int = 7, steps: int = 200, anchor_weight: float = 0.01,
                 learning_rate: float = 0.05, scale: int = 6):
        from common.ch06 import project_to_latent, stroke_target

        self._project, self._stroke_target = project_to_latent, stroke_target
        self.generator, self.scale = generator, scale
        self.options = dict(steps=steps, anchor_weight=anchor_weight, learning_rate=learning_rate)
        self.z = self.z_edit = np.asarray(z, np.float32)
        self.before = _decode_one(generator, self.z)
        self.current = self.before.copy()
        self.stroke = np.zeros((grid, grid), bool)
        self.ink = (widgets.FloatSlider(value=1.0, min=-1.0, max=1.0, step=0.1, description="grey")
                    if self.before.shape[-1] == 1 else widgets.ColorPicker(value="#ffffff", description="colour"))
        self.grid = _CellGrid(grid, grid, self.toggle)
        self.apply = widgets.Button(description="apply")
        self.apply.on_click(lambda _button: self.run())
        self.image = widgets.Image(format="png")
        self.ink.observe(lambda _change: self.show(), names="value")
        super().__init__([widgets.HBox([self.grid, widgets.VBox([self.ink, self.apply])]), self.image])
        self.show()

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
        self.show()

    def run(self) -> None:
        """Project with the stroke as constraint, starting from and anchored to z."""
        target, mask = self._stroke_target(self.before, self.stroke, self.color)
        if mask.any():
            self.z_edit, self.current, _ = self._project(self.generator, target, mask=mask,
                                                         z_init=self.z, anchor=self.z, **self.options)
        self.show()

    def show(self) -> None:
        painted, _ = self._stroke_target(self.before, self.stroke, self.color)
        row = np.concatenate([self.before, painted, self.current], axis=1)
        self.image.value = to_png_bytes(row, value_range=(-1, 1), scale=self.scale)


__all__ += ["StyleStrengthExplorer", "LatentInterpolator", "GauGANExplorer", "StrokeEditor"]


# --------------------------------------------------------------------------------------------
# Chapter 4: conditional generation and image-to-image translation

def _signed_to_unit(images) -> np.ndarray:
    """Generator output in [-1, 1] (tensor or array) -> float32 array in [0, 1]."""
    images = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    return np.clip((images.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


class ClassPicker(widgets.VBox):
    """Pick a class and a noise seed; shows ``generator([z, label])`` of a conditional GAN,
    so one can see the same z drawn as every class, or many z for one class."""

    def __init__(self, generator, num_classes: int = 10, class_names=None,
                 latent_dim: int | None = None, scale: int = 6, n: int = 1):
        self.generator, self.scale, self.n = generator, scale, int(n)
        self.latent_dim = int(latent_dim or generator.inputs[0].shape[-1])
        names = list(class_names or [str(i) for i in range(num_classes)])
        self.dropdown = widgets.Dropdown(options=[(nm, i) for i, nm in enumerate(names)],
                                         value=0, description="class")
        self.seed = widgets.IntSlider(min=0, max=999, value=0, description="z seed",
                                      continuous_update=False)
        self.image = widgets.Image(format="png")
        self.current = None
        for control in (self.dropdown, self.seed):
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.dropdown, self.seed]), self.image])
        self.update()

    def update(self) -> None:
        z = np.random.default_rng(self.seed.value).standard_normal(
            (self.n, self.latent_dim)).astype(np.float32)
        labels = np.full((self.n, 1), self.dropdown.value, dtype=np.int32)
        images = _signed_to_unit(self.generator([z, labels], training=False))
        self.current = np.concatenate(list(images), axis=1)  # the n samples side by side
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)


class TranslationBrowser(widgets.VBox):
    """Browse test images through one or more translators.

    ``directions`` maps a name (e.g. ``'horse -> zebra'``) to ``(inputs, translate)`` where
    ``inputs`` is an array ``(N, H, W, C)`` in [-1, 1] and ``translate(batch)`` returns the
    translated batch; ``targets`` optionally maps a name to ground truths shown on the
    right. A toggle picks the direction and a slider the image; shows input | output
    [| target]."""

    def __init__(self, directions: dict, targets: dict | None = None, scale: int = 2):
        if not directions:
            raise ValueError("TranslationBrowser needs at least one direction")
        self.directions, self.targets, self.scale = dict(directions), dict(targets or {}), scale
        names = list(self.directions)
        self.toggle = widgets.ToggleButtons(options=names, value=names[0], description="direction")
        n = min(len(inputs) for inputs, _ in self.directions.values())
        self.index = widgets.IntSlider(min=0, max=n - 1, value=0, description="image",
                                       continuous_update=False)
        self.image = widgets.Image(format="png")
        self.label = widgets.Label()
        self.current = None
        for control in (self.toggle, self.index):
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.toggle, self.index]), self.label, self.image])
        self.update()

    def update(self) -> None:
        name, i = self.toggle.value, self.index.value
        inputs, translate = self.directions[name]
        x = np.asarray(inputs[i:i + 1], dtype=np.float32)
        panels = [_signed_to_unit(x)[0], _signed_to_unit(translate(x))[0]]
        titles = ["input", "output"]
        if name in self.targets:
            panels.append(_signed_to_unit(self.targets[name][i]))
            titles.append("target")
        self.current = np.concatenate(panels, axis=1)
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)
        self.label.value = f"{name}, image {i}: " + " | ".join(titles)


class LatentSliders(widgets.VBox):
    """One slider per latent dimension (range [-3, 3]) and a "random z" button, for a
    generator ``G([image, z])`` such as BicycleGAN's: shows input | G(input, z) live."""

    def __init__(self, generator, image, z_dim: int | None = None, scale: int = 2,
                 seed: int = 0):
        self.generator, self.scale = generator, scale
        self.input = np.asarray(image, dtype=np.float32)
        self.z_dim = int(z_dim or generator.inputs[1].shape[-1])
        self.rng = np.random.default_rng(seed)
        self.sliders = [widgets.FloatSlider(min=-3.0, max=3.0, step=0.1, value=0.0,
                                            description=f"z[{k}]", continuous_update=False)
                        for k in range(self.z_dim)]
        self.button = widgets.Button(description="random z")
        self.image = widgets.Image(format="png")
        self.current = None
        self._hold = False
        for slider in self.sliders:
            slider.observe(lambda _change: self.update(), names="value")
        self.button.on_click(lambda _button: self.randomize())
        super().__init__([widgets.HBox([widgets.VBox(self.sliders), self.image]), self.button])
        self.update()

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
        if self._hold:
            return
        out = self.generator([self.input[None], self.z[None]], training=False)
        self.current = np.concatenate([_signed_to_unit(self.input), _signed_to_unit(out)[0]],
                                      axis=1)
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)


__all__ += ["ClassPicker", "TranslationBrowser", "LatentSliders"]


# --------------------------------------------------------------------------------------------
# Chapters 7-8: StyleGAN style mixing and truncation, SAGAN attention maps, BigGAN classes

def _seed_z(seed: int, n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(int(seed)).standard_normal((n, dim)).astype(np.float32)


def _row(images) -> np.ndarray:
    """Images in [-1, 1] (N, H, W, C) -> one [0, 1] strip, separated by white lines."""
    images = _signed_to_unit(images)
    n, h, _, c = images.shape
    gap = np.ones((h, 1, c), np.float32)
    parts = []
    for i, img in enumerate(images):
        parts += ([gap] if i else []) + [img]
    return np.concatenate(parts, axis=1)


class StyleMixer(widgets.VBox):
    """StyleGAN style mixing (Karras et al. 2019, sec. 3.1): two seeds A and B and one toggle
    per synthesis block choosing whose style (w) that block uses; the noise comes from one
    fixed seed. Shows A, B and the mix side by side. Coarse blocks (4-8) carry pose and face
    shape, middle ones (16-32) features and hair, fine ones colours and texture."""

    def __init__(self, generator, seed_a: int = 0, seed_b: int = 1, psi: float = 1.0,
                 noise_seed: int = 0, scale: int = 4):
        self.generator, self.scale = generator, scale
        self.seed_a = widgets.IntText(value=seed_a, description="seed A")
        self.seed_b = widgets.IntText(value=seed_b, description="seed B")
        n_active = generator.level + 1
        self.toggles = [widgets.ToggleButtons(options=["A", "B"], value="A",
                                              description=f"{r}x{r}",
                                              style={"button_width": "40px"})
                        for r in generator.resolutions[:n_active]]
        self.psi = widgets.FloatSlider(min=0.0, max=1.0, step=0.05, value=psi,
                                       description="psi", continuous_update=False)
        self.noise = generator.make_noise(1, seed=noise_seed)
        self.image = widgets.Image(format="png")
        self.current = None
        for control in [self.seed_a, self.seed_b, self.psi, *self.toggles]:
            control.observe(lambda _change: self.update(), names="value")
        controls = widgets.VBox([self.seed_a, self.seed_b, self.psi, *self.toggles])
        super().__init__([widgets.HBox([controls, self.image])])
        self.update()

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
        images = g.synthesize(np.concatenate([ws, mixed]), noise)
        self.current = _row(np.clip(images, -1, 1))
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)


class StyleTruncation(widgets.VBox):
    """StyleGAN's truncation trick (Karras et al. 2019, appendix B): ``w' = w_avg +
    psi (w - w_avg)`` on the blocks up to the resolution chosen in "apply to" (at first the
    generator's ``truncation_cutoff``: up to 32x32, as in the paper). psi = 1 is the untouched
    sample, 0 the average face, negative values the "anti-face". Shows ``n`` seeds."""

    def __init__(self, generator, seed: int = 0, n: int = 4, psi: float = 0.7,
                 noise_seed: int = 0, scale: int = 4):
        self.generator, self.n, self.scale = generator, int(n), scale
        self.seed = widgets.IntText(value=seed, description="seed")
        self.psi = widgets.FloatSlider(min=-1.0, max=1.5, step=0.05, value=psi,
                                       description="psi", continuous_update=False)
        options = [(f"blocks <= {r}x{r}", i + 1) for i, r in enumerate(generator.resolutions)]
        self.cutoff = widgets.Dropdown(options=options, value=generator.truncation_cutoff,
                                       description="apply to")
        self.noise = [np.repeat(n, self.n, axis=0) for n in generator.make_noise(1, noise_seed)]
        self.image = widgets.Image(format="png")
        self.current = None
        for control in (self.seed, self.psi, self.cutoff):
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.seed, self.cutoff]), self.psi, self.image])
        self.update()

    def update(self) -> None:
        g = self.generator
        images = g.generate(_seed_z(self.seed.value, self.n, g.z_dim), psi=self.psi.value,
                            cutoff=self.cutoff.value, noise=self.noise)
        self.current = _row(np.clip(images, -1, 1))
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)


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


class AttentionViewer(widgets.VBox):
    """Where does one pixel look? Generates an image of the chosen class and seed with a
    SAGAN/BigGAN generator and shows, for the query position picked with two sliders on the
    attention layer's grid, the attention weights over the image (SAGAN paper, Fig. 1)."""

    def __init__(self, generator, class_names=None, seed: int = 0, scale: int = 8):
        self.generator, self.scale = generator, scale
        names = list(class_names or [str(i) for i in range(generator.num_classes)])
        self.label = widgets.Dropdown(options=[(nm, i) for i, nm in enumerate(names)], value=0,
                                      description="class")
        self.seed = widgets.IntText(value=seed, description="seed")
        grid = generator.attention.h
        self.row = widgets.IntSlider(min=0, max=grid - 1, value=grid // 2, description="query row")
        self.col = widgets.IntSlider(min=0, max=grid - 1, value=grid // 2, description="query col")
        self.image = widgets.Image(format="png")
        self.current = None
        self._cache = None
        for control in (self.label, self.seed, self.row, self.col):
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.label, self.seed]),
                          widgets.HBox([self.row, self.col]), self.image])
        self.update()

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
        self.current = np.concatenate([_signed_to_unit(image), gap, overlay], axis=1)
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)


class TruncatedClassSampler(widgets.VBox):
    """BigGAN's truncation trick (Brock et al. 2019, sec. 3.1) for a class-conditional
    generator: ``n`` samples of one class with z drawn from N(0, I) truncated to
    ``|z_i| <= threshold``. Small thresholds give typical, similar images; large ones
    varied but less reliable images."""

    def __init__(self, generator, class_names=None, seed: int = 0, n: int = 6,
                 threshold: float = 1.0, scale: int = 4):
        self.generator, self.scale = generator, scale
        names = list(class_names or [str(i) for i in range(generator.num_classes)])
        self.label = widgets.Dropdown(options=[(nm, i) for i, nm in enumerate(names)], value=0,
                                      description="class")
        self.seed = widgets.IntText(value=seed, description="seed")
        self.n = widgets.IntSlider(min=1, max=12, value=n, description="samples",
                                   continuous_update=False)
        self.threshold = widgets.FloatSlider(min=0.1, max=2.0, step=0.05, value=threshold,
                                             description="truncation", continuous_update=False)
        self.image = widgets.Image(format="png")
        self.current = None
        for control in (self.label, self.seed, self.n, self.threshold):
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.label, self.seed]),
                          widgets.HBox([self.n, self.threshold]), self.image])
        self.update()

    def update(self) -> None:
        from common.ch08 import truncated_z

        z = truncated_z((self.n.value, self.generator.z_dim), self.threshold.value,
                        seed=self.seed.value)
        labels = np.full((self.n.value,), self.label.value, np.int32)
        self.current = _row(self.generator([z, labels], training=False))
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)


class ClassInterpolation(widgets.VBox):
    """Blend two classes with BigGAN's shared embedding: fixed z, embedding
    ``(1 - t) e_a + t e_b``. Shows the two classes and the blend."""

    def __init__(self, generator, class_names=None, class_a: int = 0, class_b: int = 1,
                 seed: int = 0, scale: int = 6):
        self.generator, self.scale = generator, scale
        names = list(class_names or [str(i) for i in range(generator.num_classes)])
        options = [(nm, i) for i, nm in enumerate(names)]
        self.class_a = widgets.Dropdown(options=options, value=class_a, description="class A")
        self.class_b = widgets.Dropdown(options=options, value=class_b, description="class B")
        self.seed = widgets.IntText(value=seed, description="seed")
        self.t = widgets.FloatSlider(min=0.0, max=1.0, step=0.05, value=0.5, description="t",
                                     continuous_update=False)
        self.image = widgets.Image(format="png")
        self.current = None
        for control in (self.class_a, self.class_b, self.seed, self.t):
            control.observe(lambda _change: self.update(), names="value")
        super().__init__([widgets.HBox([self.class_a, self.class_b, self.seed]), self.t,
                          self.image])
        self.update()

    def update(self) -> None:
        g = self.generator
        table = np.asarray(g.embedding.embeddings)
        e_a, e_b = table[self.class_a.value], table[self.class_b.value]
        t = self.t.value
        e = np.stack([e_a, (1 - t) * e_a + t * e_b, e_b]).astype(np.float32)
        z = np.repeat(_seed_z(self.seed.value, 1, g.z_dim), 3, axis=0)
        self.current = _row(g.from_embedding(z, e))
        self.image.value = to_png_bytes(self.current, value_range=(0, 1), scale=self.scale)


__all__ += ["StyleMixer", "StyleTruncation", "attention_overlay", "AttentionViewer",
            "TruncatedClassSampler", "ClassInterpolation"]
