"""radsight: an open chest X-ray assistant. Research and demonstration use only; not for diagnosis."""
from radsight.core import FINDINGS, Box, Finding, InputError, Prediction, Radiograph, Triage
from radsight.pipeline import Predictor, analyze

__version__ = "0.1.0"
__all__ = ["FINDINGS", "Box", "Finding", "InputError", "Prediction", "Predictor", "Radiograph", "Triage",
           "analyze", "__version__"]
