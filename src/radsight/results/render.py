"""The overlay a reader looks at: radiograph, heatmaps and boxes of the strongest positive findings, and a
legend of every finding. Every text is fitted to the panel or the picture it is drawn on."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from radsight.core import Anatomy, Prediction, Radiograph
from radsight.explain import METHODS
from radsight.heads.anatomy import HEART_COLOUR
from radsight.heads.findings import OTHER_COLOUR, PALETTE, by_strength, shown_maps
from radsight.heads.registry import HEADS
from radsight.inputs.preprocess import resize

OVERLAY_LONGEST = 1024  # overlays are scaled so their longest side lies in [OVERLAY_SHORTEST, OVERLAY_LONGEST]
OVERLAY_SHORTEST = 768
HEAT_FLOOR = 0.6  # heat below this share of the map's maximum is not tinted
HEAT_OPACITY = 0.45  # a map's tint at its maximum: the film stays readable under it
PANEL_WIDTH = 360
PANEL_MARGIN = 16


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def render_overlay(image: Radiograph, prediction: Prediction) -> Image.Image:
    longest = max(image.height, image.width)
    scale = min(max(1.0, OVERLAY_SHORTEST / longest), OVERLAY_LONGEST / longest)
    h, w = max(1, round(image.height * scale)), max(1, round(image.width * scale))
    picture = Image.fromarray(_tinted(resize(image.pixels, h, w), prediction), mode="RGB")
    canvas = Image.new("RGB", (w + PANEL_WIDTH, max(h, 520)), (16, 16, 20))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for head in HEADS.values():
        if head.draw is not None:
            head.draw(draw, prediction, scale, w, h)
    _draw_panel(draw, w + PANEL_MARGIN, prediction)
    return canvas


def _tinted(gray: np.ndarray, prediction: Prediction) -> np.ndarray:
    """The radiograph (h, w) in [0, 1] with each positive finding's heatmap laid over it in its colour.

    Laying tints one over another is ``picture * transmittance + colour``. Both terms are smooth, so they are
    formed on the heatmap grid and scaled up once, instead of blending every heatmap at full size.
    """
    layers = [(prediction.heatmaps[f.name], PALETTE.get(f.name, OTHER_COLOUR))
              for f in shown_maps(prediction) if f.name in prediction.heatmaps]
    grey = gray * 255.0
    if not layers:
        return np.repeat(_bytes(grey)[..., None], 3, axis=2)
    transmittance = np.ones(layers[0][0].shape, np.float32)
    colour = np.zeros((*layers[0][0].shape, 3), np.float32)
    for heat, tint in layers:
        alpha = (HEAT_OPACITY * np.clip((heat - HEAT_FLOOR) / (1 - HEAT_FLOOR), 0, 1))[..., None]
        colour = colour * (1 - alpha) + alpha * np.asarray(tint, np.float32)
        transmittance *= 1 - alpha[..., 0]
    h, w = gray.shape
    colour = np.stack([resize(channel, h, w) for channel in colour.transpose(2, 0, 1)], axis=-1)
    grey *= resize(transmittance, h, w)  # the film is grey: dimmed once, not once a channel
    return _bytes(np.add(grey[..., None], colour, out=colour))


def _bytes(values: np.ndarray) -> np.ndarray:
    """float values in [0, 255] (changed in place) -> uint8, rounded half to even."""
    return np.clip(np.rint(values, out=values), 0, 255, out=values).astype(np.uint8)


def _draw_panel(draw: ImageDraw.ImageDraw, x: int, p: Prediction) -> None:
    title, body, small = _font(18), _font(14), _font(12)
    width = PANEL_WIDTH - 2 * PANEL_MARGIN
    y = 12
    draw.text((x, y), "radsight", fill=(255, 255, 255), font=title)
    y += 24
    y = _lines(draw, (x, y), f"{p.model.name} v{p.model.version}", small, (190, 190, 190), width)
    y = _lines(draw, (x, y + 2), "NOT FOR DIAGNOSTIC USE", body, (255, 90, 90), width) + 10
    t = p.triage
    y = _lines(draw, (x, y), f"Triage: {t.priority.upper()}  (abnormal {t.abnormal_probability:.2f}, "
                             f"threshold {t.threshold:.2f}{', ' + t.model.name if t.model else ''})", body,
               (255, 255, 255), width) + 2
    if p.ood is not None and not p.ood.in_distribution:
        y = _lines(draw, (x, y), f"OUT OF DISTRIBUTION: not like the radiographs this model knows ({p.ood.why}); "
                                 "read nothing into it", body,
                   (255, 90, 90), width)
    for check in t.urgent:
        if check.withheld:
            y = _lines(draw, (x, y), f"No urgent flag for {check.finding}: {check.withheld}", small,
                       (170, 170, 170), width)
    if p.boxes_withheld:
        y = _lines(draw, (x, y), f"No boxes: {p.boxes_withheld}", small, (170, 170, 170), width)
    if p.anatomy is not None:
        y = _lines(draw, (x, y), _anatomy_line(p.anatomy, p.meta.view_position), small,
                   HEART_COLOUR if p.anatomy.plausible else (255, 90, 90), width)
    y += 8
    draw.text((x, y), "finding", fill=(170, 170, 170), font=small)
    draw.text((x + 190, y), "prob.  thresh.", fill=(170, 170, 170), font=small)
    y += 18
    shown = {f.name for f in shown_maps(p)}
    for f in by_strength(p.positives) + sorted((f for f in p.findings if not f.positive), key=lambda f: -f.probability):
        colour = PALETTE.get(f.name, OTHER_COLOUR) if f.positive else (150, 150, 150)
        if f.name in shown:  # in the map's own colour, also for a finding explained below its threshold
            draw.rectangle([x, y + 3, x + 10, y + 13], fill=PALETTE.get(f.name, OTHER_COLOUR))
        elif f.positive:
            draw.rectangle([x, y + 3, x + 10, y + 13], outline=colour)
        draw.text((x + 16, y), fitted(draw, f.name.replace("_", " "), body, 170), fill=colour, font=body)
        draw.text((x + 190, y), f"{f.probability:.2f}   {f.threshold:.2f}", fill=colour, font=body)
        y += 20
    y += 8
    if not p.positives:
        y = _lines(draw, (x, y), "No finding above its operating threshold.", small, (200, 200, 200), width)
    method = METHODS.get(p.explanation or "cam")
    note = f"Coloured: above the calibrated threshold; heatmaps and boxes by {method.title if method else p.explanation}."
    if len(p.positives) > len(shown) or any(not f.positive for f in shown_maps(p)):
        note += f" Filled squares: the {len(shown)} maps drawn on the film; hollow: positive, listed only."
    _lines(draw, (x, y), note, small, (150, 150, 150), width)


def _lines(draw: ImageDraw.ImageDraw, at: tuple[float, float], text: str, font: ImageFont.ImageFont,
           fill: tuple[int, int, int], width: float) -> float:
    """Draw ``text`` wrapped at word boundaries to ``width`` pixels; returns the y below the last line."""
    x, y = at
    for line in _wrapped(text, font, width):
        draw.text((x, y), line, fill=fill, font=font)
        y += font.size + 3
    return y


@lru_cache(maxsize=256)
def _wrapped(text: str, font: ImageFont.ImageFont, width: float) -> tuple[str, ...]:
    """:func:`wrap` on an overlay (text is measured alike on any of them), kept: most lines recur on every film."""
    return tuple(wrap(ImageDraw.Draw(Image.new("RGB", (1, 1))), text, font, width))


def wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: float) -> list[str]:
    """Lines of ``text`` no wider than ``width``; a word wider than that is cut to fit."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(candidate, font=font) <= width:
            lines[-1] = candidate
            continue
        while draw.textlength(word, font=font) > width and len(word) > 1:
            word = word[:-1]
        lines.append(word)
    return lines


def fitted(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: float) -> str:
    """``text``, cut and ended with an ellipsis when it is wider than ``width``."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _anatomy_line(a: Anatomy, view: str | None) -> str:
    if not a.plausible:
        return f"Lungs: implausible segmentation ({a.reason})"
    if a.ctr is None:
        return "Lungs: outlined; CTR not measurable"
    if a.ctr.value is None:
        return f"Lungs: outlined; no CTR: {a.ctr.reason}"
    if a.ctr.enlarged is not None:
        flag = ", enlarged (> 0.5, PA)" if a.ctr.enlarged else " (PA)"
    else:
        flag = f" ({a.ctr.not_graded or ('view unknown' if not view else f'view {view}, not PA')}: not graded)"
    method = " from the heart" if a.ctr.method == "heart" else ""
    return f"Cardiothoracic ratio {a.ctr.value:.2f}{method}{flag}"
