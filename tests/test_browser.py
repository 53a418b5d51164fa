"""The reader's web page in a real browser (Playwright driving Debian's Chromium): worklist order, viewer,
heatmap toggle, and a screenshot of the result."""
from __future__ import annotations

import io
import os
import shutil
import time

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from conftest import chest_phantom, lateral_phantom, make_dicom, served, server_unavailable, stow_body, study_dicom

pytest.importorskip("fastapi", reason="needs radsight[serve]")
uvicorn = pytest.importorskip("uvicorn", reason="needs radsight[serve]")
httpx = pytest.importorskip("httpx", reason="needs radsight[serve]")
playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (radsight[test])")

from radsight.pipeline.options import PredictorOptions  # noqa: E402
from radsight.service.app import Settings, create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture()
def server(tmp_path, tiny_bone_model):
    if not os.path.exists(CHROMIUM):
        server_unavailable("needs Debian's chromium (scripts/test.sh installs it)")
    app = create_app(Settings(data_dir=tmp_path / "data", token="t",
                              predictor=PredictorOptions(bone_model=str(tiny_bone_model), allow_ood=True)))  # phantoms, not films
    with served(app) as url:
        yield url


def test_worklist_and_viewer_in_chromium(server, tmp_path):
    api = httpx.Client(base_url=server, headers={"Authorization": "Bearer t"}, timeout=30)
    png = io.BytesIO()
    Image.fromarray((chest_phantom(seed=9) * 255).astype(np.uint8)).save(png, format="PNG")
    large = make_dicom(tmp_path / "a.dcm", chest_phantom(1955, 1841))  # the example CR's size
    ids = [api.post("/api/studies", files={"file": ("a.dcm", large.read_bytes())}).json()["id"],
           api.post("/api/studies", files={"file": ("b.png", png.getvalue())}).json()["id"]]
    deadline = time.time() + 60
    while time.time() < deadline and any(api.get(f"/api/studies/{i}").json()["status"] != "done" for i in ids):
        time.sleep(0.2)
    order = [r["id"] for r in api.get("/api/worklist").json()["studies"]]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        failed = []
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(server)
        page.wait_for_selector("#signin:not([hidden])")
        assert all(f.startswith("401 ") for f in failed), failed  # only the reads that ask for a session
        assert page.get_attribute("link[rel=icon]", "href") == "data:,"  # no /favicon.ico request to answer 404
        page.fill("#token", "wrong")  # reads need a reader session: the page asks for the token
        page.click("#signin button")
        page.wait_for_selector("#signin-error:has-text('wrong token')")
        page.fill("#token", "t")
        page.click("#signin button")
        page.wait_for_selector("#worklist tbody tr:nth-child(2)")
        assert page.is_hidden("#signin") and page.input_value("#token") == ""
        assert page.eval_on_selector_all("#worklist tbody tr", "rows => rows.map(r => r.dataset.id)") == order
        assert "Not for diagnostic use" in page.inner_text("header")
        rows = {r["id"]: r for r in page.eval_on_selector_all(
            "#worklist tbody tr", "rows => rows.map(r => ({id: r.dataset.id, study: r.cells[3].textContent}))")}
        assert rows[ids[0]]["study"] == "acc. ACC1 · 2026-01-01 · PA" and rows[ids[1]]["study"] == "b.png"
        fits = "e => e.scrollWidth <= e.clientWidth + 1"  # at 1400 px no column of the worklist is cut
        assert page.eval_on_selector("#list", fits), page.eval_on_selector("#list", "e => [e.scrollWidth, e.clientWidth]")
        page.click(f"#worklist tbody tr[data-id='{ids[0]}']")
        page.wait_for_selector("#findings tbody tr:nth-child(14)")
        swatches = page.eval_on_selector_all("#findings .swatch", "s => s.map(x => x.style.background)")
        assert len(set(swatches)) == 14  # each finding's boxes in a colour of its own
        labels = page.evaluate("""() => { const m = document.createElement('canvas').getContext('2d'); const placed = [];
            for (let i = 0; i < 4; i++) placed.push(label(m, 'Effusion', 10, 10, 14, placed, 500)); return placed; }""")
        assert all(a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]
                   for i, a in enumerate(labels) for b in labels[i + 1:])  # labels at one place do not overlap
        film, stage = (page.eval_on_selector(sel, "e => { const r = e.getBoundingClientRect(); "
                                                   "return [r.left, r.top, r.right, r.bottom]; }")
                       for sel in ("#stage canvas.image", "#stage"))
        assert film[2] <= stage[2] + 1 and film[3] <= stage[3] + 1  # opens fitted: the whole film is visible
        assert max(film[2] - film[0], film[3] - film[1]) >= 0.9 * min(stage[2] - stage[0], stage[3] - stage[1])
        toggles = page.query_selector_all("input.heat")
        if toggles:
            page.uncheck("#show-boxes")
            page.uncheck("#show-lungs")
            toggles[0].check()
            alpha = page.eval_on_selector("#stage canvas.marks", "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, "
                                                    "c.height).data; let m = 0; for (let i = 3; i < d.length; i += 4) "
                                                    "m = Math.max(m, d[i]); return m; }")
            assert 0 < alpha <= round(0.45 * 255) + 1  # the map's opacity leaves the film readable
            assert page.eval_on_selector_all("#method option", "o => o.map(x => x.value)") == [
                "cam", "gradcam", "gradcam++"]  # the result's own method (its boxes) first
            marks = page.eval_on_selector("#stage canvas.marks", "c => c.toDataURL()")
            page.select_option("#method", "gradcam++")
            assert page.eval_on_selector("#stage canvas.marks", "c => c.toDataURL()") != marks  # another method's map
            page.select_option("#method", "cam")
            page.check("#show-boxes")
            page.check("#show-lungs")
        assert page.eval_on_selector_all("#view option", "o => o.map(x => x.value)") == ["radiograph", "soft_tissue",
                                                                                        "bone"]
        canvas = "c => c.toDataURL()"
        before = page.eval_on_selector("#stage canvas.image", canvas)
        page.select_option("#view", "bone")
        assert page.eval_on_selector("#stage canvas.image", canvas) != before  # the bone view replaces the radiograph
        assert page.inner_text(".pane figcaption") == "PA · bone"  # the caption names the view shown
        page.select_option("#view", "radiograph")
        assert page.eval_on_selector("#stage canvas.image", canvas) == before
        page.fill("#width", "180")
        page.dispatch_event("#width", "input")
        assert "triage" in page.inner_text("#summary")
        shot = tmp_path / "viewer.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    picture = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert picture.std() > 20  # a drawn radiograph and tables, not a blank page
    if os.environ.get("RADSIGHT_SCREENSHOT_DIR"):
        shutil.copy(shot, os.environ["RADSIGHT_SCREENSHOT_DIR"])


@pytest.fixture()
def study_server(tmp_path, twoview_model):
    if not os.path.exists(CHROMIUM):
        server_unavailable("needs Debian's chromium (scripts/test.sh installs it)")
    app = create_app(Settings(data_dir=tmp_path / "data", token="t",
                              predictor=PredictorOptions(model=str(twoview_model), lung_model=None, allow_ood=True)))
    with served(app) as url:
        yield url


def test_a_study_shows_its_views_side_by_side_with_their_own_heatmaps(study_server, tmp_path):
    uid = generate_uid()
    files = [study_dicom(tmp_path / "pa.dcm", chest_phantom(1200, 1000, seed=4), uid, "PA"),
             study_dicom(tmp_path / "lat.dcm", lateral_phantom(1200, 1100, seed=4), uid, "LL")]
    body, content_type = stow_body([pydicom.dcmread(f) for f in files])
    api = httpx.Client(base_url=study_server, headers={"Authorization": "Bearer t"}, timeout=30)
    job = api.post("/dicom-web/studies", content=body,
                   headers={"Content-Type": content_type}).headers["x-radsight-studies"]
    _wait_done(api, job)
    with playwright.sync_playwright() as p:
        browser, page = _open_study(p, study_server, job)
        assert page.eval_on_selector_all(".pane figcaption", "c => c.map(x => x.textContent)") == ["frontal", "lateral"]
        rect = "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"
        films = page.eval_on_selector_all(".pane canvas.image", f"cs => cs.map({rect})")
        stage = page.eval_on_selector("#stage", rect)
        assert films[1][0] >= films[0][2]  # side by side, the lateral right of the frontal
        assert all(f[2] <= stage[2] + 1 and f[3] <= stage[3] + 1 for f in films)  # both whole in view
        page.uncheck("#show-boxes")
        page.check("input.heat[data-finding='Effusion']")
        alpha = ("cs => cs.map(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; "
                 "let m = 0; for (let i = 3; i < d.length; i += 4) m = Math.max(m, d[i]); return m; })")
        # the views' maps are scaled together: a view whose map stays under the tint floor (60% of the study's
        # peak) is drawn transparent, as the random model's frontal map is here
        tinted = page.eval_on_selector_all(".pane canvas.marks", alpha)
        assert len(tinted) == 2 and max(tinted) > 0
        assert "triage" in page.inner_text("#summary")
        shot = tmp_path / "study.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    if os.environ.get("RADSIGHT_SCREENSHOT_DIR"):
        shutil.copy(shot, os.environ["RADSIGHT_SCREENSHOT_DIR"])


def test_the_heart_and_clavicles_can_be_toggled(tmp_path, tiny_model):
    """With a multi-structure anatomy model the viewer offers a heart and a clavicles toggle, each redrawing."""
    if not os.path.exists(CHROMIUM):
        server_unavailable("needs Debian's chromium (scripts/test.sh installs it)")
    from test_anatomy_head import fixed_anatomy_model
    anatomy = fixed_anatomy_model(tmp_path / "anatomy")
    app = create_app(Settings(data_dir=tmp_path / "data", token="t", predictor=PredictorOptions(
        model=str(tiny_model), lung_model=str(anatomy), bone_model=None, bone_views=False, allow_ood=True)))
    with served(app) as url:
        api = httpx.Client(base_url=url, headers={"Authorization": "Bearer t"}, timeout=30)
        job = api.post("/api/studies", files={"file": ("a.dcm", make_dicom(tmp_path / "a.dcm").read_bytes())}).json()["id"]
        _wait_done(api, job)
        with playwright.sync_playwright() as p:
            browser, page = _open_study(p, url, job)
            assert page.is_visible("#heart-choice") and page.is_visible("#clavicle-choice")
            marks = "c => c.toDataURL()"
            with_all = page.eval_on_selector("#stage canvas.marks", marks)
            page.uncheck("#show-heart")
            without_heart = page.eval_on_selector("#stage canvas.marks", marks)
            page.uncheck("#show-clavicles")
            assert len({with_all, without_heart, page.eval_on_selector("#stage canvas.marks", marks)}) == 3
            browser.close()


def test_the_apparent_age_and_its_map_are_shown(tmp_path, tiny_model):
    """With the age model installed and ``heatmaps_for=("Age",)``, the summary says the apparent age and its gap
    from the stated age, and the age map has a toggle of its own that draws on the film."""
    if not os.path.exists(CHROMIUM):
        server_unavailable("needs Debian's chromium (scripts/test.sh installs it)")
    from radsight.heads.age_sex import DEFAULT_AGE_MODEL
    from radsight.pipeline.inputs import installed
    if installed(DEFAULT_AGE_MODEL) is None:
        pytest.skip(f"{DEFAULT_AGE_MODEL} is not installed")
    app = create_app(Settings(data_dir=tmp_path / "data", token="t", predictor=PredictorOptions(
        model=str(tiny_model), lung_model=None, bone_model=None, bone_views=False, allow_ood=True,
        heatmaps_for=("Age",))))
    path = make_dicom(tmp_path / "a.dcm")
    ds = pydicom.dcmread(path)
    ds.PatientAge = "045Y"
    ds.save_as(path)
    with served(app) as url:
        api = httpx.Client(base_url=url, headers={"Authorization": "Bearer t"}, timeout=30)
        job = api.post("/api/studies", files={"file": ("a.dcm", path.read_bytes())}).json()["id"]
        _wait_done(api, job)
        with playwright.sync_playwright() as p:
            browser, page = _open_study(p, url, job)
            summary = page.inner_text("#summary")
            assert "Apparent age" in summary and "from the stated age" in summary and "045" not in summary
            page.uncheck("#show-boxes")
            marks = "c => c.toDataURL()"
            before = page.eval_on_selector("#stage canvas.marks", marks)
            page.check("input.heat[data-finding='Age']")
            assert page.eval_on_selector("#stage canvas.marks", marks) != before
            browser.close()


def _wait_done(api, job: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and api.get(f"/api/studies/{job}").json()["status"] != "done":
        time.sleep(0.2)


def _open_study(p, url: str, job: str):
    """Chromium at 1400x900 signed in (token "t") with ``job`` open in the viewer: (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"])
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(url)
    page.fill("#token", "t")
    page.click("#signin button")
    page.click(f"#worklist tbody tr[data-id='{job}']")
    page.wait_for_selector("#findings tbody tr:nth-child(14)")
    return browser, page
