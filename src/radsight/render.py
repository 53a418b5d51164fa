"""The overlay a reader looks at: radiograph, heatmaps and boxes of positive findings, and a legend."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from radsight.core import FINDINGS, Anatomy, Prediction, Radiograph
from radsight.preprocess import resize

OVERLAY_LONGEST = 1024  # overlays are scaled so their longest side lies in [OVERLAY_SHORTEST, OVERLAY_LONGEST]
OVERLAY_SHORTEST = 768
HEAT_FLOOR = 0.5  # heat below this share of the map's maximum is not tinted
PANEL_WIDTH = 360
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
    for finding in prediction.positives:
        colour = PALETTE.get(finding.name, OTHER_COLOUR)
        for box in finding.boxes:
            x0, y0 = box.x * scale, box.y * scale
            x1, y1 = (box.x + box.width) * scale, (box.y + box.height) * scale
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=max(2, w // 400))
            draw.text((x0 + 3, max(0, y0 - label_font.size - 4)), f"{finding.name} {finding.probability:.2f}",
                      fill=colour, font=label_font, stroke_width=2, stroke_fill=(0, 0, 0))
    if prediction.anatomy is not None:
        _draw_anatomy(draw, prediction.anatomy, scale, w)
    _draw_panel(draw, w + 16, prediction)
    return canvas


def _tinted(gray: np.ndarray, prediction: Prediction) -> np.ndarray:
    """The radiograph (h, w) in [0, 1] with each positive finding's heatmap laid over it in its colour.

    Laying tints one over another is ``picture * transmittance + colour``. Both terms are smooth, so they are
    formed on the heatmap grid and scaled up once, instead of blending every heatmap at full size.
    """
    layers = [(prediction.heatmaps[f.name], PALETTE.get(f.name, OTHER_COLOUR))
              for f in prediction.positives if f.name in prediction.heatmaps]
    rgb = np.repeat(gray[..., None] * 255.0, 3, axis=2)
    if layers:
        transmittance = np.ones(layers[0][0].shape, np.float32)
        colour = np.zeros((*layers[0][0].shape, 3), np.float32)
        for heat, tint in layers:
            alpha = (0.6 * np.clip((heat - HEAT_FLOOR) / (1 - HEAT_FLOOR), 0, 1))[..., None]
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
    if anatomy.ctr is not None:
        for line, colour in ((anatomy.ctr.thoracic_line, THORAX_COLOUR), (anatomy.ctr.cardiac_line, HEART_COLOUR)):
            (x0, y0), (x1, y1) = line
            draw.line([(x0 * scale, y0 * scale), (x1 * scale, y1 * scale)], fill=colour, width=width)
            for x, y in ((x0, y0), (x1, y1)):
                draw.line([(x * scale, y * scale - 6), (x * scale, y * scale + 6)], fill=colour, width=width)


def _draw_panel(draw: ImageDraw.ImageDraw, x: int, p: Prediction) -> None:
    title, body, small = _font(18), _font(14), _font(12)
    y = 12
    draw.text((x, y), "radsight", fill=(255, 255, 255), font=title)
    y += 24
    draw.text((x, y), f"{p.model.name} v{p.model.version}", fill=(190, 190, 190), font=small)
    y += 18
    draw.text((x, y), "NOT FOR DIAGNOSTIC USE", fill=(255, 90, 90), font=body)
    y += 28
    t = p.triage
    draw.text((x, y), f"Triage: {t.priority.upper()}  (abnormal {t.abnormal_probability:.2f}, "
                      f"threshold {t.threshold:.2f})", fill=(255, 255, 255), font=body)
    y += 22
    if p.anatomy is not None:
        draw.text((x, y), _anatomy_line(p.anatomy), fill=HEART_COLOUR if p.anatomy.plausible else (255, 90, 90),
                  font=small)
        y += 16
    y += 8
    draw.text((x, y), "finding", fill=(170, 170, 170), font=small)
    draw.text((x + 190, y), "prob.  thresh.", fill=(170, 170, 170), font=small)
    y += 18
    for f in sorted(p.findings, key=lambda f: (not f.positive, -f.probability)):
        colour = PALETTE.get(f.name, OTHER_COLOUR) if f.positive else (150, 150, 150)
        if f.positive:
            draw.rectangle([x, y + 3, x + 10, y + 13], fill=colour)
        draw.text((x + 16, y), f.name.replace("_", " "), fill=colour, font=body)
        draw.text((x + 190, y), f"{f.probability:.2f}   {f.threshold:.2f}", fill=colour, font=body)
        y += 20
    y += 8
    if not p.positives:
        draw.text((x, y), "No finding above its operating threshold.", fill=(200, 200, 200), font=small)
        y += 16
    draw.text((x, y), "Coloured: above the calibrated threshold;", fill=(150, 150, 150), font=small)
    draw.text((x, y + 15), "heatmaps are class activation maps.", fill=(150, 150, 150), font=small)


def _anatomy_line(a: Anatomy) -> str:
    if not a.plausible:
        return f"Lungs: implausible segmentation ({a.reason})"[:58]
    if a.ctr is None:
        return "Lungs: outlined; CTR not measurable"
    flag = {True: ", enlarged (> 0.5, PA)", False: " (PA)", None: " (view not PA: not graded)"}[a.ctr.enlarged]
    return f"Cardiothoracic ratio {a.ctr.value:.2f}{flag}"
