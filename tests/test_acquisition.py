"""NIH's metadata table as the header a PNG lacks: view position, pixel spacing scaled to the file, age, sex."""
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from radsight.cli import app
from radsight.core import ImageMeta, Radiograph
from radsight.data.acquisition import read_acquisition, with_stated

from conftest import chest_phantom

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n")


def _table(tmp_path, *rows: str):
    path = tmp_path / "Data_Entry.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_spacing_is_scaled_to_the_files_size_axis_by_axis_and_a_dicom_header_wins(tmp_path):
    table = read_acquisition(_table(tmp_path, "a.png,No Finding,0,1,57,M,PA,2000,3000,0.14,0.15",
                                    "b.png,No Finding,0,2,,,AP,bad,3000,0.14,0.15"))
    film = with_stated(Radiograph(np.zeros((600, 500), np.float32), "a.png"), table["a.png"])
    assert film.meta.view_position == "PA"
    assert film.meta.pixel_spacing_mm == pytest.approx((0.15 * 3000 / 600, 0.14 * 2000 / 500))  # (row, column)
    assert (film.meta.stated_age_years, film.meta.stated_sex) == (57, "M")
    unsized = with_stated(Radiograph(np.zeros((60, 50), np.float32), "b.png"), table["b.png"])
    assert unsized.meta.pixel_spacing_mm is None and unsized.meta.stated_age_years is None
    assert unsized.meta.view_position == "AP"
    dicom = Radiograph(np.zeros((60, 50), np.float32), "a.dcm", ImageMeta(modality="DX", view_position="AP"))
    assert with_stated(dicom, table["a.png"]).meta == ImageMeta(modality="DX", view_position="AP")


def test_a_table_of_another_form_is_refused_with_its_missing_columns(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("image,label\na.png,1\n")
    with pytest.raises(ValueError, match="View Position"):
        read_acquisition(path)
    result = CliRunner().invoke(app, ["analyze", "--example", "--metadata", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--metadata" in result.output and "Traceback" not in result.output


def test_analyze_reads_the_view_and_spacing_of_the_films_the_table_names(tmp_path):
    Image.fromarray((chest_phantom(256, 256) * 255).astype(np.uint8)).save(tmp_path / "film.png")
    table = _table(tmp_path, "film.png,Cardiomegaly,0,1,57,M,PA,2048,2048,0.14,0.14")
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "film.png"), "--metadata", str(table),
                                      "--allow-ood", "--no-bone-views", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "film.json").read_text())
    assert doc["image"]["view_position"] == "PA"
    assert doc["image"]["pixel_spacing_mm"] == pytest.approx([1.12, 1.12])
    assert "stated_age_years" not in json.dumps(doc) and "57" not in json.dumps(doc["image"])
    ctr = doc["anatomy"]["ctr"]
    if ctr["value"] is not None:  # the phantom's lungs found: the diameters in mm, graded on a PA film
        assert ctr["cardiac_mm"] > 0 and ctr["thoracic_mm"] > ctr["cardiac_mm"] and ctr["enlarged"] is not None
