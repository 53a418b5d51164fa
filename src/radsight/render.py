"""The overlay a reader looks at: radiograph, heatmaps and boxes of the strongest positive findings, and a
legend of every finding. Every text is fitted to the panel or the picture it is drawn on."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from radsight.core import FINDINGS, Anatomy, Finding, Prediction, Radiograph
from radsight.explain import METHODS
from radsight.preprocess import resize
from radsight.triage import threshold_scaled

OVERLAY_LONGEST = 1024  # overlays are scaled so their longest side lies in [OVERLAY_SHORTEST, OVERLAY_LONGEST]
OVERLAY_SHORTEST = 768
HEAT_FLOOR = 0.6  # heat below this share of the map's maximum is not tinted
HEAT_OPACITY = 0.45  # a map's tint at its maximum: the film stays readable under it
PANEL_WIDTH = 360
PANEL_MARGIN = 16
MAX_MAPS = 3  # more tints and boxes than this hide the film: the rest are listed in the legend only
# One colour a finding (colour-blind-aware where possible), the same in every overlay.
PALETTE = {
    name: colour for name, colour in zip(FINDINGS, [
        (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
        (204, 121, 167), (255, 60, 60), (170, 255, 120), (120, 200, 255), (255, 170, 200), (200, 170, 255),
        (255, 210, 140), (160, 160, 160)])
}
OTHER_COLOUR = (255, 255, 255)


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
    label_font = _font(max(12, w // 60))
    placed: list[tuple[float, float, float, float]] = []
    for finding in shown_maps(prediction):
        colour = PALETTE.get(finding.name, OTHER_COLOUR)
        for box in finding.boxes:
            x0, y0 = box.x * scale, box.y * scale
            x1, y1 = (box.x + box.width) * scale, (box.y + box.height) * scale
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=max(2, w // 400))
            text = f"{finding.name.replace('_', ' ')} {finding.probability:.2f}"
            at = _label_place(draw, text, label_font, x0, y0, w, h, placed)
            draw.text(at, text, fill=colour, font=label_font, stroke_width=2, stroke_fill=(0, 0, 0))
    if prediction.anatomy is not None:
        _draw_anatomy(draw, prediction.anatomy, scale, w)
    _draw_panel(draw, w + PANEL_MARGIN, prediction)
    return canvas


def _label_place(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, x0: float, y0: float, w: int,
                 h: int, placed: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Where a box's label goes: above its top-left corner, inside the picture, moved down past labels
    already placed; its rectangle is added to ``placed``."""
    tw, th = draw.textlength(text, font=font), font.size + 4
    x, y = min(x0 + 3, max(0.0, w - tw - 3)), max(0.0, y0 - th)
    while any(x < r[2] and r[0] < x + tw and y < r[3] and r[1] < y + th for r in placed) and y + 2 * th < h:
        y += th
    placed.append((x, y, x + tw, y + th))
    return x, y


def by_strength(findings: list[Finding]) -> list[Finding]:
    """Furthest past its own operating threshold first."""
    return sorted(findings, key=lambda f: -threshold_scaled(f.probability, f.threshold))


def shown_maps(prediction: Prediction) -> list[Finding]:
    """The findings whose heatmaps and boxes are drawn: the MAX_MAPS strongest positive ones, then, where there is
    room, those explained on request (below their thresholds)."""
    asked = [f for f in prediction.findings if not f.positive and f.name in prediction.heatmaps]
    return (by_strength(prediction.positives) + by_strength(asked))[:MAX_MAPS]


def _tinted(gray: np.ndarray, prediction: Prediction) -> np.ndarray:
    """The radiograph (h, w) in [0, 1] with each positive finding's heatmap laid over it in its colour.

    Laying tints one over another is ``picture * transmittance + colour``. Both terms are smooth, so they are
    formed on the heatmap grid and scaled up once, instead of blending every heatmap at full size.
    """
    layers = [(prediction.heatmaps[f.name], PALETTE.get(f.name, OTHER_COLOUR))
              for f in shown_maps(prediction) if f.name in prediction.heatmaps]
    rgb = np.repeat(gray[..., None] * 255.0, 3, axis=2)
    if layers:
        transmittance = np.ones(layers[0][0].shape, np.float32)
        colour = np.zeros((*layers[0][0].shape, 3), np.float32)
        for heat, tint in layers:
            alpha = (HEAT_OPACITY * np.clip((heat - HEAT_FLOOR) / (1 - HEAT_FLOOR), 0, 1))[..., None]
            colour = colour * (1 - alpha) + alpha * np.asarray(tint, np.float32)
            transmittance *= 1 - alpha[..., 0]
        h, w = gray.shape
        colour = np.stack([resize(channel, h, w) for channel in colour.transpose(2, 0, 1)], axis=-1)
        rgb = rgb * resize(transmittance, h, w)[..., None] + colour
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


LUNG_COLOUR, THORAX_COLOUR, HEART_COLOUR = (0, 220, 255), (255, 255, 255), (255, 140, 0)


def _draw_anatomy(draw: ImageDraw.ImageDraw, anatomy: Anatomy, scale: float, w: int) -> None:
    width = max(2, w // 400)
    for lung in anatomy.lungs:
        points = [(x * scale, y * scale) for x, y in lung.polygon]
        if len(points) > 2:
            draw.line(points + points[:1], fill=LUNG_COLOUR, width=width)
    if anatomy.ctr is not None and anatomy.ctr.value is not None:
        for line, colour in ((anatomy.ctr.thoracic_line, THORAX_COLOUR), (anatomy.ctr.cardiac_line, HEART_COLOUR)):
            (x0, y0), (x1, y1) = line
            draw.line([(x0 * scale, y0 * scale), (x1 * scale, y1 * scale)], fill=colour, width=width)
            for x, y in ((x0, y0), (x1, y1)):
                draw.line([(x * scale, y * scale - 6), (x * scale, y * scale + 6)], fill=colour, width=width)


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
                             f"threshold {t.threshold:.2f})", body, (255, 255, 255), width) + 2
    if p.ood is not None and not p.ood.in_distribution:
        y = _lines(draw, (x, y), f"OUT OF DISTRIBUTION: not like the radiographs this model knows (score "
                                 f"{p.ood.score:.2f} > {p.ood.threshold:.2f}); read nothing into it", body,
                   (255, 90, 90), width)
    for check in t.urgent:
        if check.withheld:
            y = _lines(draw, (x, y), f"No urgent flag for {check.finding}: {check.withheld}", small,
                       (170, 170, 170), width)
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
    for line in wrap(draw, text, font, width):
        draw.text((x, y), line, fill=fill, font=font)
        y += font.size + 3
    return y


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
        flag = " (view unknown: not graded)" if not view else f" (view {view}, not PA: not graded)"
    return f"Cardiothoracic ratio {a.ctr.value:.2f}{flag}"
