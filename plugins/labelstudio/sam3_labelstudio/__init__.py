"""Label Studio ML backend for SAM 3: converts Label Studio JSON to `sam3_core` calls and back."""

__version__ = "0.1.0"
