"""radsight's version, importable by any layer without loading the package's face."""
__version__ = "0.1.0"
