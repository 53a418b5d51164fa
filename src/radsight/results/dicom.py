"""Results as DICOM, for the CLI (``--dicom-out``) and the service alike: a TID 1500 Structured Report, a
Segmentation of the lung fields, a Secondary Capture of the overlay and of each derived view.

Each carries the study's identifiers (so the PACS files it with the radiograph), says it is not for diagnostic use
in its series description, and names radsight and the model as contributing equipment. The SR lists the SEG
among its evidence.
"""
from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radsight.core import (
    OLDEST_WRITTEN,
    AgeEstimate,
    Anatomy,
    Box,
    Detections,
    Finding,
    ModelRef,
    Prediction,
    SexEstimate,
    StudyPrediction,
)
from radsight.heads.registry import HEADS
from radsight.heads.view import LATERAL, LATERAL_POSITIONS
from radsight.io.atomic import atomic_write
from radsight.version import __version__

NOT_FOR_DIAGNOSIS = "radsight CAD - NOT FOR DIAGNOSTIC USE"
MANUFACTURER = "radsight"
SCHEME = "99RADSIGHT"  # private coding scheme for what SNOMED and LOINC lack
PROBABILITY = hd.sr.CodedConcept("RS-P", SCHEME, "Probability of finding")
ABOVE_THRESHOLD = hd.sr.CodedConcept("RS-T", SCHEME, "Above operating threshold")
CHEST_XRAY = hd.sr.CodedConcept("36643-5", "LN", "XR Chest 2V")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
RATIO = hd.sr.CodedConcept("{ratio}", "UCUM", "ratio")
MM = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
CTR = hd.sr.CodedConcept("RS-CTR", SCHEME, "Cardiothoracic ratio")
CARDIAC_DIAMETER = hd.sr.CodedConcept("RS-CD", SCHEME, "Maximal transverse cardiac diameter")
THORACIC_DIAMETER = hd.sr.CodedConcept("RS-TD", SCHEME, "Maximal internal thoracic diameter")
HEART = hd.sr.CodedConcept("80891009", "SCT", "Heart")
APPARENT = hd.sr.CodedConcept("RS-APPEAR", SCHEME, "Apparent age and sex of the film")
APPARENT_AGE = hd.sr.CodedConcept("RS-AGE", SCHEME, "Apparent age")
FEMALE_PROBABILITY = hd.sr.CodedConcept("RS-PF", SCHEME, "Probability of female sex")
YEARS = hd.sr.CodedConcept("a", "UCUM", "year")
NODULE = hd.sr.CodedConcept("27925004", "SCT", "Nodule")
DIAMETER = hd.sr.CodedConcept("81827009", "SCT", "Diameter")


def _equipment(model: str) -> list[hd.ContributingEquipment]:
    return [hd.ContributingEquipment(manufacturer=MANUFACTURER, purpose_of_reference=codes.DCM.ProcessingEquipment,
                                     manufacturer_model_name=model, software_versions=__version__,
                                     contribution_description=NOT_FOR_DIAGNOSIS)]


def structured_report(source: pydicom.Dataset, p: Prediction, also: list[pydicom.Dataset] = ()) -> pydicom.Dataset:
    """TID 1500 measurement report of one image: one group per finding with its probability, whether it passes
    the operating threshold, and its strongest box as an SCOORD polyline on the source image. VerificationFlag
    UNVERIFIED. ``also``: other results of the same analysis (the lung SEG), listed with the source as evidence."""
    return _measurement_report(p.model, p.findings, [(source, None, _boxes(p))], also, p.anatomy, p.sections)


def study_report(views: list[tuple[pydicom.Dataset, str]], sp: StudyPrediction,
                 also: list[pydicom.Dataset] = ()) -> pydicom.Dataset:
    """TID 1500 measurement report of a study: ``views`` are the header and view name ("frontal", "lateral") of
    each image the model read, in ``sp.views`` order; all are its evidence. A finding's group carries its
    strongest box on each view that has one (one group a view), or, without boxes, names every view read."""
    read = [v.prediction for v in sp.views if v.read]
    return _measurement_report(sp.model, sp.findings, [(ds, name, _boxes(p)) for (ds, name), p in zip(views, read)],
                               also, read[0].anatomy if read else None, read[0].sections if read else {})


def _boxes(p: Prediction) -> dict[str, list[Box]]:
    return {f.name: f.boxes for f in p.findings}


def _measurement_report(model: ModelRef, findings: list[Finding],
                        views: list[tuple[pydicom.Dataset, str | None, dict[str, list[Box]]]],
                        also: list[pydicom.Dataset], anatomy: Anatomy | None = None,
                        sections: dict | None = None) -> pydicom.Dataset:
    algorithm = hd.sr.AlgorithmIdentification(name=f"radsight {model.name}", version=model.version,
                                              family=codes.DCM.ArtificialIntelligence)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="radsight", manufacturer_name=MANUFACTURER, model_name=model.name))
    groups = []
    for f in findings:
        kind = hd.sr.CodedConcept(f.name.upper()[:16], SCHEME, f.name.replace("_", " "))
        probability = hd.sr.Measurement(name=PROBABILITY, value=round(f.probability, 6), unit=NO_UNITS,
                                        algorithm_id=algorithm)
        verdict = hd.sr.QualitativeEvaluation(ABOVE_THRESHOLD, codes.SCT.Present if f.positive else codes.SCT.Absent)
        # TID 1410 takes one region per group: the strongest box (it comes first) of each view that has one
        regions = [(ds, name, boxes[f.name][0]) for ds, name, boxes in views if boxes.get(f.name)]
        for ds, name, b in regions:
            corners = np.array([[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height],
                                [b.x, b.y + b.height], [b.x, b.y]], dtype=np.float32)
            region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners,
                                       source_image=hd.sr.SourceImageForRegion.from_source_image(ds))
            label = f"{f.name} region" + (f" ({name} view)" if name else "")
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label),
                referenced_region=region, finding_type=kind, algorithm_id=algorithm,
                measurements=[probability], qualitative_evaluations=[verdict]))
        if not regions:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f.name),
                finding_type=kind, algorithm_id=algorithm, measurements=[probability],
                qualitative_evaluations=[verdict],
                source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds) for ds, _, _ in views]))
    if anatomy is not None and anatomy.ctr is not None and anatomy.ctr.value is not None:
        groups.append(_ctr_group(anatomy, views[0][0]))
    if (sections or {}).get("nodules") is not None:
        groups += _nodule_groups(sections["nodules"], views[0][0])
    if (sections or {}).get("age") is not None:
        groups.append(_age_group(sections["age"], sections.get("sex"), views[0][0]))
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=device),
                                     procedure_reported=CHEST_XRAY, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(evidence=[ds for ds, _, _ in views] + list(also), content=report,
                                   series_instance_uid=generate_uid(), series_number=9901,
                                   sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
                                   is_complete=True, is_verified=False, series_description=NOT_FOR_DIAGNOSIS,
                                   contributing_equipment=_equipment(model.name))


def _ctr_group(anatomy: Anatomy, source: pydicom.Dataset) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The cardiothoracic ratio (by the anatomy model) and, where the spacing is known, its two diameters in mm;
    the method (from the heart's outline or the lungs' inner borders) in the tracking identifier."""
    ctr, model = anatomy.ctr, anatomy.model
    algorithm = hd.sr.AlgorithmIdentification(name=f"radsight {model.name}", version=model.version,
                                              family=codes.DCM.ArtificialIntelligence)
    measurements = [hd.sr.Measurement(name=CTR, value=round(ctr.value, 4), unit=RATIO, algorithm_id=algorithm)]
    if ctr.cardiac_mm is not None and ctr.thoracic_mm is not None:
        measurements += [hd.sr.Measurement(name=CARDIAC_DIAMETER, value=round(ctr.cardiac_mm, 1), unit=MM,
                                           algorithm_id=algorithm),
                         hd.sr.Measurement(name=THORACIC_DIAMETER, value=round(ctr.thoracic_mm, 1), unit=MM,
                                           algorithm_id=algorithm)]
    method = "from the heart outline" if ctr.method == "heart" else "from the lungs' inner borders"
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"Cardiothoracic ratio ({method})"),
        finding_type=HEART, algorithm_id=algorithm, measurements=measurements,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])


def _nodule_groups(found: Detections, source: pydicom.Dataset) -> list:
    """One group a detected nodule: a circle on the source image (centre and a point on its edge), its score
    and, where the spacing is known, its diameter in mm."""
    algorithm = hd.sr.AlgorithmIdentification(name=f"radsight {found.model.name}", version=found.model.version,
                                              family=codes.DCM.ArtificialIntelligence)
    groups = []
    for i, d in enumerate(found.detections, 1):
        circle = np.array([[d.x, d.y], [d.x + max(d.radius_px, 1.0), d.y]], dtype=np.float32)
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.CIRCLE, graphic_data=circle,
                                   source_image=hd.sr.SourceImageForRegion.from_source_image(source))
        measurements = [hd.sr.Measurement(name=PROBABILITY, value=round(d.score, 6), unit=NO_UNITS,
                                          algorithm_id=algorithm)]
        if d.diameter_mm is not None:
            measurements.append(hd.sr.Measurement(name=DIAMETER, value=round(d.diameter_mm, 1), unit=MM,
                                                  algorithm_id=algorithm))
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"Nodule {i} ({d.location})"),
            referenced_region=region, finding_type=NODULE, algorithm_id=algorithm, measurements=measurements))
    return groups


def _age_group(age: AgeEstimate, sex: SexEstimate | None,
               source: pydicom.Dataset) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The film's apparent age in years (90 for any estimate over 89, as the results write "90+") and, where the
    model estimates it, the probability of female sex."""
    algorithm = hd.sr.AlgorithmIdentification(name=f"radsight {age.model.name}", version=age.model.version,
                                              family=codes.DCM.ArtificialIntelligence)
    measurements = [hd.sr.Measurement(name=APPARENT_AGE, value=round(min(age.estimate, OLDEST_WRITTEN + 1), 1),
                                      unit=YEARS, algorithm_id=algorithm)]
    if sex is not None and sex.probability_female is not None:
        measurements.append(hd.sr.Measurement(name=FEMALE_PROBABILITY, value=round(sex.probability_female, 6),
                                              unit=NO_UNITS, algorithm_id=algorithm))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Apparent age and sex"),
        finding_type=APPARENT, algorithm_id=algorithm, measurements=measurements,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)])


def _capture(source: pydicom.Dataset, pixels: np.ndarray, photometric: hd.PhotometricInterpretationValues,
             bits: int, series_number: int, model: str, series: tuple[str, int] | None = None,
             view: str | None = None) -> hd.sc.SCImage:
    """``series``: the series UID and instance number, when several captures share a series; ``view``: the view
    the source was read as, when known."""
    series_uid, number = series or (generate_uid(), 1)
    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=np.ascontiguousarray(pixels), photometric_interpretation=photometric,
        bits_allocated=bits, coordinate_system=hd.CoordinateSystemNames.PATIENT, series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=number,
        manufacturer=MANUFACTURER, patient_orientation=_orientation(source, view),
        contributing_equipment=_equipment(model))


def _orientation(source: pydicom.Dataset, view: str | None) -> tuple[str, str]:
    """The capture's row and column directions: the source's, else those a film of its view is displayed with
    (a lateral facing the viewer's left: P and F; a frontal: L and F)."""
    given = [str(v).upper() for v in source.get("PatientOrientation") or ()]
    if len(given) == 2 and all(v and set(v) <= set("APLRHF") for v in given):
        return given[0], given[1]
    lateral = view == LATERAL if view else str(source.get("ViewPosition", "")).upper() in LATERAL_POSITIONS
    return ("P", "F") if lateral else ("L", "F")


def overlay_capture(source: pydicom.Dataset, overlay_rgb: np.ndarray, model: str,
                    series: tuple[str, int] | None = None, view: str | None = None) -> pydicom.Dataset:
    """The overlay (findings, boxes, lung contours) as an RGB Secondary Capture in the radiograph's study;
    ``series`` and ``view`` as for :func:`_capture`."""
    sc = _capture(source, overlay_rgb.astype(np.uint8), hd.PhotometricInterpretationValues.RGB, 8, 9902, model,
                  series, view)
    sc.SeriesDescription = NOT_FOR_DIAGNOSIS
    sc.BurnedInAnnotation = "YES"
    sc.Laterality = source.get("Laterality", "")  # type 2C: present, empty for the chest (an unpaired part)
    return sc


# Derived views: series number and description.
VIEW_SERIES = {"soft_tissue": (9903, "soft tissue (bone suppressed)"), "bone": (9904, "bone (subtracted)")}


def view_capture(source: pydicom.Dataset, view: str, pixels: np.ndarray, model: str) -> pydicom.Dataset:
    """A derived view (soft tissue, bone) in [0, 1] at the radiograph's size, as a 12-bit MONOCHROME2 Secondary
    Capture in the radiograph's study, marked derived and not for diagnostic use."""
    number, description = VIEW_SERIES[view]
    stored = np.round(np.clip(pixels, 0, 1) * 4095).astype(np.uint16)
    sc = _capture(source, stored, hd.PhotometricInterpretationValues.MONOCHROME2, 16, number, model)
    sc.SeriesDescription = f"radsight {description} - NOT FOR DIAGNOSTIC USE"
    sc.ImageType = ["DERIVED", "SECONDARY", "BONE_SUPPRESSION" if view == "soft_tissue" else "BONE"]
    sc.DerivationDescription = f"{description} by {model}; computed image, not acquired"
    sc.BurnedInAnnotation = "NO"
    sc.Laterality = source.get("Laterality", "")
    return sc


def segmentation(source: pydicom.Dataset, p: Prediction) -> pydicom.Dataset | None:
    """Every head's structures (``Head.segments``: the lung fields, heart and clavicles) as one binary DICOM Segmentation on the
    source image's pixel grid, a segment each; None when no head outlined anything."""
    found = [segment for head in HEADS.values() if head.segments is not None for segment in head.segments(p)]
    if not found:
        return None
    frames = np.stack([s.mask for s in found], axis=-1).astype(np.uint8)[None]
    model = found[0].model  # the SEG's device: the model of its first segment
    segments = [hd.seg.SegmentDescription(
        segment_number=i + 1, segment_label=s.label,
        segmented_property_category=codes.SCT.Organ if s.organ else codes.SCT.AnatomicalStructure,
        segmented_property_type=hd.sr.CodedConcept(*s.code), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(name=s.model.name, version=s.model.version,
                                                                    family=codes.DCM.ArtificialIntelligence))
        for i, s in enumerate(found)]
    for description, s in zip(segments, found):
        if s.laterality is not None:
            description.SegmentedPropertyTypeModifierCodeSequence = [hd.sr.CodedConcept(*s.laterality)]
    seg = hd.seg.Segmentation(
        source_images=[_valid_geometry(source)], pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=generate_uid(), series_number=9905,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=model.name, software_versions=__version__, device_serial_number="none",
        series_description=NOT_FOR_DIAGNOSIS, contributing_equipment=_equipment(model.name))
    if "PatientOrientation" not in seg:  # required without a frame of reference; as the source says, else PA
        seg.PatientOrientation = list(source.get("PatientOrientation") or ("L", "F"))
    return seg


def _valid_geometry(source: pydicom.Dataset) -> pydicom.Dataset:
    """The header the SEG copies its geometry from, without a Pixel Spacing that is zero (some CR write one):
    the SEG then states none rather than an invalid one."""
    spacing = source.get("PixelSpacing")
    if spacing is None or all(float(v) > 0 for v in spacing):
        return source
    copy = pydicom.Dataset(source)
    del copy.PixelSpacing
    return copy


def dicom_results(source: pydicom.Dataset, p: Prediction, overlay_rgb: np.ndarray) -> dict[str, pydicom.Dataset]:
    """Every DICOM result of one analysis, by file suffix: ``sr``, ``seg`` (when the lungs were found), ``overlay``
    and one a derived view. ``source``: the radiograph's header (pixels not needed)."""
    out: dict[str, pydicom.Dataset] = {}
    seg = segmentation(source, p)
    if seg is not None:
        out["seg"] = seg
    out = {"sr": structured_report(source, p, [seg] if seg is not None else []), **out,
           "overlay": overlay_capture(source, overlay_rgb, p.model.name)}
    for view, pixels in p.views.items():
        out[view] = view_capture(source, view, pixels, p.views_model.name)
    return out


def study_results(views: list[tuple[pydicom.Dataset, str]], sp: StudyPrediction,
                  overlays: list[np.ndarray]) -> dict[str, pydicom.Dataset]:
    """Every DICOM result of one study's analysis, by file suffix: ``sr`` (its evidence every image read),
    ``seg`` (the frontal's lungs, when found), ``<view>.overlay``, one overlay a view read, in one series, and
    ``frontal.<view>``, the frontal's computed views.
    ``views``: the header and view name of each image read, in ``sp.views`` order; ``overlays`` theirs."""
    read = [v.prediction for v in sp.views if v.read]
    seg = segmentation(views[0][0], read[0])
    out = {"sr": study_report(views, sp, [seg] if seg is not None else [])} | ({"seg": seg} if seg is not None else {})
    series = generate_uid()
    for i, ((ds, name), overlay) in enumerate(zip(views, overlays)):
        out[f"{name}.overlay"] = overlay_capture(ds, overlay, sp.model.name, (series, i + 1), name)
    for view, pixels in read[0].views.items():  # the frontal's computed views
        out[f"{views[0][1]}.{view}"] = view_capture(views[0][0], view, pixels, read[0].views_model.name)
    return out


def save_dataset(dataset: pydicom.Dataset, path: Path) -> None:
    """Write ``dataset`` as a DICOM file that appears whole or not at all."""
    atomic_write(path, lambda tmp: dataset.save_as(tmp, enforce_file_format=True))


def file_name(stem: str, kind: str) -> str:
    """The one naming scheme of DICOM results (CLI, Ray and service): STEM.sr.dcm, STEM.seg.dcm, STEM.sc.dcm (the
    overlay), STEM.<view>.dcm (soft_tissue, bone); for a study STEM.<view>.sc.dcm, one overlay a view read."""
    return f"{stem}.{kind.removesuffix('overlay') + 'sc' if kind.endswith('overlay') else kind}.dcm"
