"""Interactive ipywidgets for the notebooks. Each widget keeps the array it shows in
``.current`` and redraws an ``ipywidgets.Image`` from it, so tests can drive the controls
and check that the picture changes."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np

from .probability import conditional_face
from .viz import to_png_bytes

__all__ = ["ConditionalFaceExplorer", "StepBrowser", "conditional_face_explorer", "step_browser"]

_ANY = "any"


class ConditionalFaceExplorer(widgets.VBox):
    """Pick attribute conditions (any / True / False for each) and a statistic (mean or
    median); shows the resulting conditional face and how many images it averages."""

    def __init__(self, images, attributes, attribute_names=None, max_median_images: int = 500,
                 scale: int = 2):
        self.images, self.attributes = images, attributes
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
        face, count = conditional_face(self.images, self.attributes, self.conditions,
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


def conditional_face_explorer(images, attributes, attribute_names=None, **kwargs):
    """Build a :class:`ConditionalFaceExplorer`."""
    return ConditionalFaceExplorer(images, attributes, attribute_names, **kwargs)


def step_browser(frames, titles=None, **kwargs):
    """Build a :class:`StepBrowser`."""
    return StepBrowser(frames, titles, **kwargs)
