"""radsight: an open chest X-ray assistant. Research and demonstration use only; not for diagnosis."""
__version__ = "0.1.0"  # before the imports below: modules they load read it

from radsight.core import FINDINGS, Box, Finding, InputError, Prediction, Radiograph, Triage  # noqa: E402
from radsight.pipeline import Predictor, analyze  # noqa: E402

__all__ = ["FINDINGS", "Box", "Finding", "InputError", "Prediction", "Predictor", "Radiograph", "Triage",
           "analyze", "__version__"]
