"""A key image: the source image with the AI result burned in, as a Secondary Capture.

Any PACS viewer shows a Secondary Capture, including those that render neither SR nor
SEG, so the key image is how every radiologist sees what the model saw. It is the key
source image (windowed as a viewer shows it), with the heatmap alpha-blended in a
perceptual colormap (inferno), boxes and mask outlines drawn, and a banner above the image
that says it is an AI result and not for primary diagnosis. The banner is drawn above the
pixels rather than over them, so no anatomy is hidden. Text is rendered with matplotlib's
Agg canvas and its bundled DejaVu Sans font (no system fonts, no global matplotlib state).

Geometry: images are scaled so that the whole key image (banner included) is at most
1024 pixels on its long side; small images are enlarged to 512 pixels so the banner is
legible, and narrow ones are centred on a canvas at least 512 pixels wide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from highdicom.sc import SCImage
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from radpilot.models.prediction import ImageRef, Prediction
from radpilot.results.coding import text_value
from radpilot.results.common import (
    CHARSET,
    building,
    contributing_equipment,
    index_sources,
    long_string,
    source_for,
)
from radpilot.results.context import ResultContext, ResultError, ResultKind
from radpilot.results.orientation import patient_orientation, source_image_item
from radpilot.results.render import RGB, contour, display_rgb, draw_rectangle, resample, resize_mask

__all__ = ["MAX_SIZE", "Layout", "banner_lines", "build_key_image", "layout", "render_key_image"]

MAX_SIZE = 1024
_MIN_SIZE = 512
_BOX = (255, 215, 0)
_CONTOUR = (0, 255, 255)
_WARNING = (255, 96, 96)
_WHITE = (255, 255, 255)
_HEAT_FLOOR = 0.2  # attribution below this is not shown: the image stays as it was
_HEAT_ALPHA = 0.6


@dataclass(frozen=True)
class Layout:
    """Where the source image lands in the key image: ``x = x0 + col * scale``, etc."""

    rows: int  # of the whole key image
    columns: int
    banner: int  # rows of banner above the image
    x0: int
    image_rows: int
    image_columns: int

    def to_output(
        self, x: float, y: float, source_rows: int, source_columns: int
    ) -> tuple[float, float]:
        """Source pixel coordinate (column, row) to key image coordinate."""
        return (
            self.x0 + x * self.image_columns / source_columns,
            self.banner + y * self.image_rows / source_rows,
        )


def layout(rows: int, columns: int) -> Layout:
    """The key image geometry for a source image of ``rows`` x ``columns``."""
    banner_max = round(MAX_SIZE * 0.07)
    scale = max(1.0, _MIN_SIZE / max(rows, columns))
    scale = min(scale, MAX_SIZE / columns, (MAX_SIZE - banner_max) / rows)
    image_rows, image_columns = max(1, round(rows * scale)), max(1, round(columns * scale))
    width = min(MAX_SIZE, max(image_columns, _MIN_SIZE))
    banner = max(28, round(width * 0.07))
    return Layout(
        rows=image_rows + banner,
        columns=width,
        banner=banner,
        x0=(width - image_columns) // 2,
        image_rows=image_rows,
        image_columns=image_columns,
    )


def banner_lines(prediction: Prediction, ctx: ResultContext) -> tuple[str, str]:
    """The two lines burned in above the image."""
    first = f"AI RESULT - {ctx.model_label}"
    headline = prediction.headline
    if headline is not None:
        first += f" - {headline.label} {headline.score:.2f}"
        if headline.threshold is not None:
            first += f" (op {headline.threshold:.2f})"
    return text_value(first), "NOT FOR PRIMARY DIAGNOSIS"


def _text(lines: Sequence[tuple[str, tuple[int, int, int]]], width: int, height: int) -> RGB:
    figure = Figure(figsize=(width / 72.0, height / 72.0), dpi=72, facecolor="black")
    canvas = FigureCanvasAgg(figure)
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]  # matplotlib stubs
    margin = 6
    for i, (line, colour) in enumerate(lines):
        size = 0.62 * height / len(lines)
        text = figure.text(
            margin / width,
            1.0 - (i + 0.5) / len(lines),
            line,
            color=tuple(c / 255.0 for c in colour),
            fontsize=size,
            family="DejaVu Sans",
            va="center",
            ha="left",
            parse_math=False,
            usetex=False,
        )
        while text.get_window_extent(renderer).width > width - 2 * margin and size > 7:
            size *= 0.92
            text.set_fontsize(size)
        shown = line
        while text.get_window_extent(renderer).width > width - 2 * margin and len(shown) > 4:
            shown = shown[:-2]
            text.set_text(shown + "\u2026")
    canvas.draw()  # type: ignore[no-untyped-call]
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[no-untyped-call]
    out = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = min(height, rgba.shape[0]), min(width, rgba.shape[1])
    out[:h, :w] = rgba[:h, :w, :3]
    return out


def _key(prediction: Prediction, sources: Sequence[Dataset]) -> ImageRef:
    if prediction.key_image is not None:
        return prediction.key_image
    if prediction.images:
        return prediction.images[0]
    ds = sources[0]
    return ImageRef(str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ds.SeriesInstanceUID))


def render_key_image(
    prediction: Prediction,
    ds: Dataset,
    key: ImageRef,
    ctx: ResultContext,
    overlays: bool = True,
) -> tuple[RGB, Layout]:
    """Draw the key image (and, with ``overlays=False``, the same without AI marks).

    Parameters
    ----------
    prediction
        Heatmap (over ``key``), boxes on ``key`` and masks with a frame for ``key``
        are drawn; the headline finding goes into the banner.
    ds
        The key image's dataset, with pixel data.
    key
        Which image (and frame) of ``ds`` to draw.
    ctx
        The model named in the banner.
    overlays
        ``False`` draws only the windowed image and the banner (for comparison).

    Returns
    -------
    tuple
        The RGB pixels (uint8, rows x columns x 3) and their :class:`Layout`.

    Raises
    ------
    ResultError
        If the heatmap's shape differs from the key image's, or the pixels cannot be
        displayed.
    """
    rows, columns = int(ds.Rows), int(ds.Columns)
    geometry = layout(rows, columns)
    picture = resample(display_rgb(ds, key.frame), geometry.image_rows, geometry.image_columns)
    heatmap = prediction.heatmap if overlays else None
    if heatmap is not None:
        if heatmap.shape != (rows, columns):
            raise ResultError(
                f"heatmap has shape {heatmap.shape}, the key image is ({rows}, {columns}); "
                "the heatmap must be over prediction.key_image"
            )
        heat = np.clip(resample(heatmap, geometry.image_rows, geometry.image_columns), 0, 1)
        colours = matplotlib.colormaps["inferno"](heat)[..., :3] * 255.0
        alpha = _HEAT_ALPHA * np.clip((heat - _HEAT_FLOOR) / (0.8 - _HEAT_FLOOR), 0.0, 1.0)
        picture = picture * (1.0 - alpha[..., None]) + colours * alpha[..., None]
    image = np.clip(np.rint(picture), 0, 255).astype(np.uint8)
    if overlays:
        frames = [i for i, ref in enumerate(prediction.images) if ref == key]
        for mask in prediction.masks.values():
            if frames and mask.ndim == 3 and mask.shape[1:] == (rows, columns):
                small = resize_mask(mask[frames[0]], geometry.image_rows, geometry.image_columns)
                image[contour(small)] = _CONTOUR
        for box in prediction.boxes:
            if box.image == key:
                x0, y0 = geometry.to_output(box.x0, box.y0, rows, columns)
                x1, y1 = geometry.to_output(box.x1, box.y1, rows, columns)
                draw_rectangle(
                    image,
                    x0 - geometry.x0,
                    y0 - geometry.banner,
                    x1 - geometry.x0,
                    y1 - geometry.banner,
                    _BOX,
                )
    canvas = np.zeros((geometry.rows, geometry.columns, 3), dtype=np.uint8)
    first, second = banner_lines(prediction, ctx)
    canvas[: geometry.banner] = _text(
        [(first, _WHITE), (second, _WARNING)], geometry.columns, geometry.banner
    )
    canvas[geometry.banner :, geometry.x0 : geometry.x0 + geometry.image_columns] = image
    return canvas, geometry


def build_key_image(
    prediction: Prediction, sources: Sequence[Dataset], ctx: ResultContext
) -> SCImage:
    """The key image as an RGB Secondary Capture in the sources' study, labelled as AI.

    Parameters
    ----------
    prediction
        The result to draw; ``key_image`` picks the source (else the first image).
    sources
        The source images; the key image's dataset must hold its pixel data.
    ctx
        The model and job: UIDs, series number, the banner's model name and version.

    Returns
    -------
    highdicom.sc.SCImage
        A pydicom Dataset with file meta, ready for ``dcmwrite(..., enforce_file_format=True)``.

    Raises
    ------
    ResultError
        If the key image is not among ``sources``, has no displayable pixel data, or
        the heatmap does not fit it.
    """
    by_uid = index_sources(sources)
    key = _key(prediction, sources)
    ds = source_for(key, by_uid)
    if "PixelData" not in ds:
        raise ResultError("the key image was passed without pixel data; read it in full")
    pixels, _ = render_key_image(prediction, ds, key, ctx)
    orientation = patient_orientation(ds)
    with building("key image"):
        sc = SCImage.from_ref_dataset(
            ref_dataset=ds,
            pixel_array=pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=ctx.uid("sc-series"),
            series_number=ctx.series_number(ResultKind.KEY_IMAGE),
            sop_instance_uid=ctx.uid("sc"),
            instance_number=1,
            manufacturer=long_string(ctx.manufacturer),
            # highdicom insists on single-letter values; the real value is set below.
            patient_orientation=("L", "P"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            contributing_equipment=[contributing_equipment(ctx)],
            series_description=long_string(f"AI {ctx.model_label}"),
            specific_character_set=CHARSET,
        )
    sc.PatientOrientation = orientation  # PS3.3 C.7.6.1.1.1; empty (type 2) if unknown
    # Type 2C in General Series; dciodvfy wants it present (empty: not a paired part).
    sc.Laterality = str(ds.get("Laterality") or ds.get("ImageLaterality") or "").strip("UB")
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"  # workstation: rendered by software, not digitised film
    sc.BurnedInAnnotation = "YES"
    if ds.get("RecognizableVisualFeatures"):
        sc.RecognizableVisualFeatures = ds.RecognizableVisualFeatures
    sc.DerivationDescription = text_value(
        f"AI result of {ctx.model_label} (weights sha256 {ctx.weights_sha256}) burned into "
        "the source image; preliminary, not for primary diagnosis"
    )[:1024]
    sc.ImageComments = "AI RESULT - NOT FOR PRIMARY DIAGNOSIS"
    sc.SourceImageSequence = [
        source_image_item(key, ds, codes.DCM.SourceImageForImageProcessingOperation)
    ]
    return sc
