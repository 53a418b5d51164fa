"""Results as DICOM for the PACS: a TID 1500 Structured Report and a Secondary Capture of the overlay.

Both carry the study's identifiers (so the PACS files them with the radiograph), say they are not for
diagnostic use in the series description, and name radsight and the model as contributing equipment.
"""
from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radsight import __version__
from radsight.core import Prediction

NOT_FOR_DIAGNOSIS = "radsight CAD - NOT FOR DIAGNOSTIC USE"
MANUFACTURER = "radsight"
SCHEME = "99RADSIGHT"  # private coding scheme for what SNOMED and LOINC lack
PROBABILITY = hd.sr.CodedConcept("RS-P", SCHEME, "Probability of finding")
ABOVE_THRESHOLD = hd.sr.CodedConcept("RS-T", SCHEME, "Above operating threshold")
CHEST_XRAY = hd.sr.CodedConcept("36643-5", "LN", "XR Chest 2V")
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")


def _equipment(model: str) -> list[hd.ContributingEquipment]:
    return [hd.ContributingEquipment(manufacturer=MANUFACTURER, purpose_of_reference=codes.DCM.ProcessingEquipment,
                                     manufacturer_model_name=model, software_versions=__version__,
                                     contribution_description=NOT_FOR_DIAGNOSIS)]


def structured_report(source: pydicom.Dataset, p: Prediction) -> pydicom.Dataset:
    """TID 1500 measurement report: one group per finding with its probability, whether it passes the
    operating threshold, and its boxes as SCOORD polylines on the source image. VerificationFlag UNVERIFIED."""
    algorithm = hd.sr.AlgorithmIdentification(name=f"radsight {p.model.name}", version=p.model.version,
                                              family=codes.DCM.ArtificialIntelligence)
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="radsight", manufacturer_name=MANUFACTURER, model_name=p.model.name))
    groups = []
    for f in p.findings:
        kind = hd.sr.CodedConcept(f.name.upper()[:16], SCHEME, f.name.replace("_", " "))
        probability = hd.sr.Measurement(name=PROBABILITY, value=round(f.probability, 6), unit=NO_UNITS,
                                        algorithm_id=algorithm)
        verdict = hd.sr.QualitativeEvaluation(ABOVE_THRESHOLD, codes.SCT.Present if f.positive else codes.SCT.Absent)
        boxes = f.boxes[:1]  # TID 1410 takes one region per group; the strongest box comes first
        if boxes:
            b = boxes[0]
            corners = np.array([[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height],
                                [b.x, b.y + b.height], [b.x, b.y]], dtype=np.float32)
            region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners,
                                       source_image=hd.sr.SourceImageForRegion.from_source_image(source))
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{f.name} region"),
                referenced_region=region, finding_type=kind, algorithm_id=algorithm,
                measurements=[probability], qualitative_evaluations=[verdict]))
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f.name),
                finding_type=kind, algorithm_id=algorithm, measurements=[probability],
                qualitative_evaluations=[verdict],
                source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)]))
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_device_context=device),
                                     procedure_reported=CHEST_XRAY, imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(evidence=[source], content=report, series_instance_uid=generate_uid(),
                                 series_number=9901, sop_instance_uid=generate_uid(), instance_number=1,
                                 manufacturer=MANUFACTURER, is_complete=True, is_verified=False,
                                 series_description=NOT_FOR_DIAGNOSIS, contributing_equipment=_equipment(p.model.name))
    return sr


def _capture(source: pydicom.Dataset, pixels: np.ndarray, photometric: hd.PhotometricInterpretationValues,
             bits: int, series_number: int, model: str) -> hd.sc.SCImage:
    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=np.ascontiguousarray(pixels), photometric_interpretation=photometric,
        bits_allocated=bits, coordinate_system=hd.CoordinateSystemNames.PATIENT, series_instance_uid=generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"), contributing_equipment=_equipment(model))


def overlay_capture(source: pydicom.Dataset, overlay_rgb: np.ndarray, model: str) -> pydicom.Dataset:
    """The overlay (findings, boxes, lung contours) as an RGB Secondary Capture in the radiograph's study."""
    sc = _capture(source, overlay_rgb.astype(np.uint8), hd.PhotometricInterpretationValues.RGB, 8, 9902, model)
    sc.SeriesDescription = NOT_FOR_DIAGNOSIS
    sc.BurnedInAnnotation = "YES"
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
    return sc
