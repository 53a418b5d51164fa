"""Dataset adapters read tiny copies of each release's published layout (built here) into one label space."""
from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from radsight.cli import app
from radsight.core import FINDINGS
from radsight.data.adapters import ADAPTERS, import_release
from radsight.data.manifest import read_manifest

CHEX_HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
               "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
               "Fracture,Support Devices\n")


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _layouts(root):
    nih = root / "nih"
    _write(nih / "Data_Entry_2017.csv", "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age\n"
           "00000001_000.png,Cardiomegaly|Effusion,0,1,58\n00000002_000.png,No Finding,0,2,40\n"
           "00000003_000.png,Pleural_Thickening,0,3,33\n")
    _write(nih / "BBox_List_2017.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
           "00000001_000.png,Cardiomegaly,10.5,20,300,200\n")
    _write(nih / "test_list.txt", "00000002_000.png\n")
    chex = root / "chexpert"
    _write(chex / "train.csv", CHEX_HEADER + "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg,Female,68,"
           "Frontal,AP,,,1.0,1.0,,-1.0,,,,0.0,1.0,,,1.0\n")
    _write(chex / "valid.csv", CHEX_HEADER + "CheXpert-v1.0/valid/patient64541/study1/view1_frontal.jpg,Male,73,"
           "Frontal,AP,1.0,,,,,,,,,,,,,\n")
    mimic = root / "mimic"
    _write(mimic / "mimic-cxr-2.0.0-chexpert.csv", "subject_id,study_id," + CHEX_HEADER.split(",", 5)[5].replace(
        "\n", "") + "\n10000032,50414267," + ",".join(["", "", "", "", "", "-1.0", "", "", "1.0", "", "", "", "",
                                                        ""]) + "\n")
    _write(mimic / "mimic-cxr-2.0.0-split.csv", "dicom_id,study_id,subject_id,split\nabc,50414267,10000032,validate\n")
    _write(mimic / "mimic-cxr-2.0.0-metadata.csv", "dicom_id,subject_id,study_id,ViewPosition\nabc,10000032,50414267,PA\n")
    pad = root / "padchest"
    _write(pad / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv", "ImageID,ImageDir,PatientID,Projection,Labels\n"
           "a.png,0,p1,PA,\"['pleural effusion', 'hiatal hernia', 'scoliosis']\"\nb.png,1,p2,PA,['normal']\n")
    vin = root / "vindr"
    header = "image_id,rad_id,Atelectasis,Cardiomegaly,Nodule/Mass,Pleural effusion,Pneumothorax,No finding\n"
    _write(vin / "annotations" / "image_labels_train.csv", header + "img1,R1,0,1,0,0,0,0\nimg1,R2,0,0,1,0,0,0\n")
    _write(vin / "annotations" / "image_labels_test.csv", header + "img2,R1,0,0,0,0,0,1\n")
    rsna = root / "rsna"
    _write(rsna / "stage_2_train_labels.csv", "patientId,x,y,width,height,Target\nu1,,,,,0\n"
           "u2,264.0,152.0,213.0,379.0,1\nu2,562.0,152.0,256.0,453.0,1\n")
    cohen = root / "cohen"
    _write(cohen / "metadata.csv", "patientid,offset,view,finding,modality,filename\n"
           "1,3,PA,Pneumonia/Viral/COVID-19,X-ray,a.png\n1,3,L,Pneumonia/Viral/COVID-19,X-ray,b.png\n"
           "2,,AP Supine,No Finding,X-ray,c.png\n3,1,Axial,COVID-19,CT,d.png\n")
    return {"chestxray14": nih, "chexpert": chex, "mimic-cxr-jpg": mimic, "padchest": pad, "vindr-cxr": vin,
            "rsna-pneumonia": rsna, "covid-chestxray": cohen}


def _labels(manifest, i):
    return dict(zip(FINDINGS, manifest.labels[i]))


@pytest.fixture()
def manifests(tmp_path):
    out = {}
    for name, root in _layouts(tmp_path / "releases").items():
        import_release(name, root, tmp_path / f"{name}.csv")
        out[name] = read_manifest(tmp_path / f"{name}.csv", root)
    return out


def test_every_release_maps_onto_the_nih_findings_with_nan_where_it_is_silent(manifests):
    assert set(manifests) == set(ADAPTERS)
    cohen = manifests["covid-chestxray"]  # radiographs only; a study is a patient at one offset
    assert cohen.images == ["images/a.png", "images/b.png", "images/c.png"]
    assert _labels(cohen, 0)["Pneumonia"] == 1 and math.isnan(_labels(cohen, 0)["Effusion"])
    assert not np.isnan(cohen.labels[2]).any() and cohen.labels[2].sum() == 0  # "No Finding"
    nih = manifests["chestxray14"]
    assert _labels(nih, 0)["Cardiomegaly"] == 1 and _labels(nih, 0)["Effusion"] == 1 and _labels(nih, 0)["Mass"] == 0
    assert _labels(nih, 2)["Pleural_Thickening"] == 1 and not np.isnan(nih.labels).any()
    assert nih.splits[1] == "test" and nih.boxes[0] == {"Cardiomegaly": [(10.5, 20.0, 300.0, 200.0)]}
    chex = manifests["chexpert"]
    first = _labels(chex, 0)
    assert first["Cardiomegaly"] == 1 and first["Effusion"] == 1 and first["Pneumothorax"] == 0
    assert math.isnan(first["Edema"])  # uncertain (-1), ignored by default
    assert math.isnan(first["Nodule"]) and math.isnan(first["Atelectasis"])  # not labelled by CheXpert
    assert chex.patient_ids == ["patient00001", "patient64541"] and chex.splits == ["train", "val"]
    assert chex.images[0] == "train/patient00001/study1/view1_frontal.jpg"
    mimic = manifests["mimic-cxr-jpg"]
    assert mimic.images == ["files/p10/p10000032/s50414267/abc.jpg"] and mimic.splits == ["val"]
    assert _labels(mimic, 0)["Atelectasis"] == 1 and math.isnan(_labels(mimic, 0)["Edema"])
    pad = manifests["padchest"]
    assert _labels(pad, 0)["Effusion"] == 1 and _labels(pad, 0)["Hernia"] == 1 and _labels(pad, 0)["Mass"] == 0
    assert not np.isnan(pad.labels).any() and pad.images[0] == "0/a.png"
    vin = manifests["vindr-cxr"]
    assert _labels(vin, 0)["Cardiomegaly"] == 1 and math.isnan(_labels(vin, 0)["Mass"])  # Nodule/Mass: an extra
    assert math.isnan(_labels(vin, 0)["Edema"]) and vin.splits[1] == "test"
    rsna = manifests["rsna-pneumonia"]
    assert [_labels(rsna, i)["Pneumonia"] for i in range(2)] == [0, 1]
    assert len(rsna.boxes[1]["Pneumonia"]) == 2 and math.isnan(_labels(rsna, 0)["Effusion"])


def test_extra_findings_are_kept_and_the_uncertain_policy_is_named(tmp_path):
    import csv
    roots = _layouts(tmp_path / "r")
    import_release("chexpert", roots["chexpert"], tmp_path / "ones.csv", uncertain="ones")
    rows = list(csv.DictReader(open(tmp_path / "ones.csv")))
    assert rows[0]["Edema"] == "1" and rows[0]["Support Devices"] == "1" and rows[0]["Lung Opacity"] == "1"
    import_release("vindr-cxr", roots["vindr-cxr"], tmp_path / "v.csv")
    assert list(csv.DictReader(open(tmp_path / "v.csv")))[0]["Nodule/Mass"] == "1"
    with pytest.raises(ValueError, match="choose one of ignore, ones, zeros"):
        import_release("chexpert", roots["chexpert"], tmp_path / "x.csv", uncertain="maybe")


def test_cli_data_import_and_a_wrong_folder(tmp_path):
    roots = _layouts(tmp_path / "r")
    ok = CliRunner().invoke(app, ["data", "import", "padchest", str(roots["padchest"]), "--out", str(tmp_path / "p.csv")])
    assert ok.exit_code == 0 and "2 images" in ok.output, ok.output
    bad = CliRunner().invoke(app, ["data", "import", "chexpert", str(tmp_path), "--out", str(tmp_path / "c.csv")])
    assert bad.exit_code == 2 and "train.csv: missing" in bad.output
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "stage_2_train_labels.csv").write_text("patient,Target\nu1,0\n")
    odd = CliRunner().invoke(app, ["data", "import", "rsna-pneumonia", str(tmp_path / "odd"), "--out", str(tmp_path / "o.csv")])
    assert odd.exit_code == 2 and "not the rsna-pneumonia layout" in odd.output
