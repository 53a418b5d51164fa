"""Image input: DICOM and PNG/JPEG files to :class:`~radsight.core.Radiograph`."""
from radsight.io.loader import SUPPORTED_SUFFIXES, expand_inputs, load_image

__all__ = ["SUPPORTED_SUFFIXES", "expand_inputs", "load_image"]
