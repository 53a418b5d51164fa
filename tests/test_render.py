import numpy as np
from PIL import Image, ImageDraw

from radsight.core import (
    FINDINGS,
    Anatomy,
    Box,
    CardiothoracicRatio,
    Finding,
    ImageMeta,
    ModelRef,
    Prediction,
    Radiograph,
    Triage,
    UrgentCheck,
)
from radsight.heads.findings import MAX_MAPS, shown_maps
from radsight.results.render import PANEL_WIDTH, _anatomy_line, _font, fitted, render_overlay, wrap


def crowded_prediction(size: int = 256) -> tuple[Radiograph, Prediction]:
    """Ten positive findings, each with a heatmap and a box in the same corner."""
    findings = [Finding(name, 0.1 + 0.05 * i, 0.1, i < 10, [Box(0, 0, 100, 100, 0.5)] if i < 10 else [])
                for i, name in enumerate(FINDINGS)]
    heat = np.ones((64, 64), np.float32)
    anatomy = Anatomy(ModelRef("lungs", "1"), plausible=False,
                      reason="right lung is only 20% of the image high and a long reason follows it " * 2)
    triage = Triage(0.9, 0.5, "high", [UrgentCheck("Pneumothorax", None, False, "no validated point " * 4)])
    p = Prediction("x.png", size, size, ModelRef("m", "1"), triage, findings, anatomy=anatomy,
                   heatmaps={f.name: heat for f in findings if f.positive})
    return Radiograph(np.full((size, size), 0.5, np.float32), "x.png", ImageMeta()), p


def test_only_the_strongest_maps_are_drawn_and_every_text_fits_the_panel():
    image, p = crowded_prediction()
    shown = shown_maps(p)
    assert len(shown) == MAX_MAPS and shown[0].name == "Edema"  # furthest past its threshold
    overlay = render_overlay(image, p)
    panel = np.asarray(overlay)[:, -8:]  # the panel's right margin stays empty: no text runs past it
    assert (panel == panel[0, 0]).all()
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    lines = wrap(draw, "a " * 50 + "x" * 200, _font(12), 200)
    assert all(draw.textlength(line, font=_font(12)) <= 200 for line in lines) and len(lines) > 2
    assert PANEL_WIDTH > 200
    name = fitted(draw, "Enlarged Cardiomediastinum and more", _font(14), 170)
    assert name.endswith("…") and draw.textlength(name, font=_font(14)) <= 170


def test_an_unknown_view_reads_view_unknown():
    ctr = CardiothoracicRatio(0.6, 60, 100, ((0, 0), (1, 0)), ((0, 1), (1, 1)), None)
    anatomy = Anatomy(ModelRef("lungs", "1"), plausible=True, ctr=ctr)
    assert "view unknown" in _anatomy_line(anatomy, None)
    assert "view AP, not PA" in _anatomy_line(anatomy, "AP")
