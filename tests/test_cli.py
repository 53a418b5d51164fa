"""The command line as a user meets it: exit codes, one-line errors, no torch at inference."""
import json
import subprocess
import sys

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from radsight.cli import app

from conftest import corpus_file, make_dicom

runner = CliRunner()


def test_analyze_example_with_the_shipped_model(tmp_path):
    corpus_file("RG1_UNCR.dcm")
    result = runner.invoke(app, ["analyze", "--example", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "RG1_UNCR.json").read_text())
    assert (doc["width"], doc["height"]) == (1841, 1955)
    assert doc["model"]["name"] == "radsight-nih64-demo"
    assert len(doc["findings"]) == 14 and doc["triage"]["priority"] in ("urgent", "high", "routine")
    assert (tmp_path / doc["overlay"]).is_file()
    assert "not for diagnostic use" in doc["disclaimer"]


def test_batch_with_bad_files_reports_each_on_one_line(tmp_path, phantom, tiny_model):
    folder = tmp_path / "in"
    folder.mkdir()
    make_dicom(folder / "good.dcm", phantom)
    (folder / "empty.png").write_bytes(b"")
    (folder / "ct.dcm").write_bytes(make_dicom(tmp_path / "ct.dcm", phantom, modality="CT").read_bytes())
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(folder / "dot.png")
    result = runner.invoke(app, ["analyze", str(folder), "--out", str(tmp_path / "out"), "--model", str(tiny_model),
                                 "--save-predictions", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "Traceback" not in result.output
    assert any("empty.png: empty file" in e for e in errors)
    assert any("ct.dcm: modality CT" in e for e in errors)
    assert "analyzed 1 of 4 images" in result.output
    assert (tmp_path / "p.csv").read_text().startswith("Image Index,prob_Atelectasis")


def test_the_processes_engine_writes_and_reports_what_the_local_one_does(tmp_path, phantom, tiny_model):
    folder = tmp_path / "in"
    folder.mkdir()
    make_dicom(folder / "good.dcm", phantom)
    Image.fromarray((phantom * 255).astype(np.uint8)).save(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    runs = {}
    for engine in ("local", "processes"):
        result = runner.invoke(app, ["analyze", str(folder), "--out", str(tmp_path / engine), "--model",
                                     str(tiny_model), "--allow-ood", "--workers", "2", "--engine", engine])
        assert result.exit_code == 0, result.output
        runs[engine] = result.output
    assert "analyzed 2 of 3 images" in runs["processes"] and "empty.png: empty file" in runs["processes"]
    lines = {engine: sorted(line for line in out.splitlines() if "->" in line or line.startswith("error:"))
             for engine, out in runs.items()}
    assert lines["processes"] == [line.replace(str(tmp_path / "local"), str(tmp_path / "processes"))
                                  for line in lines["local"]]
    written = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "processes").iterdir())
    for name in written:
        if name.endswith(".json"):
            assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "processes" / name).read_bytes()


def test_nothing_analyzable_exits_non_zero(tmp_path, tiny_model):
    (tmp_path / "x.txt").write_text("no image")
    result = runner.invoke(app, ["analyze", str(tmp_path / "x.txt"), "--out", str(tmp_path / "o"),
                                 "--model", str(tiny_model)])
    assert result.exit_code == 1
    assert "not a DICOM, PNG or JPEG" in result.output


def test_a_folder_without_images_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("no image")
    result = runner.invoke(app, ["analyze", str(tmp_path)])
    assert result.exit_code == 1 and f"no DICOM, PNG or JPEG files in {tmp_path}" in result.output


def test_version():
    from radsight import __version__
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"radsight {__version__}"


def test_piped_batch_prints_a_line_an_image_and_nothing_on_stderr(tmp_path, phantom, tiny_model):
    paths = [str(make_dicom(tmp_path / f"{i}.dcm", phantom)) for i in range(4)]  # > 3: a bar on a terminal
    run = subprocess.run([sys.executable, "-m", "radsight", "analyze", *paths, "--out", str(tmp_path / "o"),
                          "--model", str(tiny_model), "--workers", "1"], capture_output=True, text=True, check=True)
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith(path) for line, path in zip(lines, paths))


def test_unknown_model_is_a_clear_error(tmp_path, phantom):
    result = runner.invoke(app, ["analyze", str(make_dicom(tmp_path / "a.dcm", phantom)), "--model", "nope"])
    assert result.exit_code == 2 and "no model named 'nope'" in result.output


def test_analyze_does_not_import_torch(tmp_path, phantom, tiny_model):
    path = make_dicom(tmp_path / "a.dcm", phantom)
    code = ("import sys; from radsight.cli import app; "
            f"sys.argv=['radsight','analyze',{str(path)!r},'--out',{str(tmp_path / 'o')!r},'--model',{str(tiny_model)!r}]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_calibrate_refuses_benchmark_split(tmp_path, tiny_model):
    import shutil
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    (tmp_path / "img").mkdir()
    header = "image,patient_id,split," + ",".join(__import__("radsight").FINDINGS)
    (tmp_path / "m.csv").write_text(header + "\n" + "a.png,1,benchmark," + ",".join(["0"] * 14) + "\n")
    result = runner.invoke(app, ["calibrate", "--model", str(model), "--manifest", str(tmp_path / "m.csv"),
                                 "--images", str(tmp_path / "img"), "--split", "benchmark"])
    assert result.exit_code == 2 and "benchmark" in result.output


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    for command in ("analyze", "train", "export", "calibrate", "evaluate", "models"):
        assert command in result.output


def test_thorax_model_without_a_lung_model_is_a_clear_error(tmp_path, phantom, tiny_model):
    import shutil

    from radsight.models.config import ModelConfig
    folder = tmp_path / "thorax"
    shutil.copytree(tiny_model, folder)
    cfg = ModelConfig.load(folder)
    cfg.input = type(cfg.input)(**{**cfg.input.__dict__, "region": "thorax"})
    cfg.save(folder)
    path = make_dicom(tmp_path / "a.dcm", phantom)
    result = runner.invoke(app, ["analyze", str(path), "--model", str(folder), "--no-anatomy", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "needs a lung model" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["analyze", str(path), "--model", str(folder), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output


def test_models_list_shows_installed_and_pullable(tmp_path, monkeypatch):
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path))
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "radsight-nih64-demo  [installed" in result.output
    assert "xrv-densenet121-res224-nih  [not pulled: radsight models pull" in result.output
    assert "Lung Opacity" in result.output and "licence" in result.output


def test_models_pull_offline_fails_fast_with_a_hint(tmp_path, monkeypatch):
    import time
    from dataclasses import replace

    from radsight.models import catalog
    entry = catalog.CATALOG["xrv-densenet121-res224-nih"]  # an unresolvable host, also where there is network
    monkeypatch.setitem(catalog.CATALOG, entry.name, replace(entry, url="https://radsight.invalid/nih.pt"))
    start = time.perf_counter()
    result = runner.invoke(app, ["models", "pull", "xrv-densenet121-res224-nih", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "radsight models import xrv-densenet FILE" in result.output
    assert time.perf_counter() - start < 30
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_models_pull_unknown_name(tmp_path):
    result = runner.invoke(app, ["models", "pull", "no-such-model", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2 and "no published model named 'no-such-model'" in result.output
