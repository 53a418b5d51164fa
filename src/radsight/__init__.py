"""radsight: an open chest X-ray assistant. Research and demonstration use only; not for diagnosis."""
from radsight.core import FINDINGS, Box, Finding, InputError, Prediction, Radiograph, Triage
from radsight.pipeline.predictor import Predictor, analyze
from radsight.version import __version__

__all__ = ["FINDINGS", "Box", "Finding", "InputError", "Prediction", "Predictor", "Radiograph", "Triage",
           "analyze", "__version__"]
