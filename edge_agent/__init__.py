"""edge-agent: on-device defect segmentation for NVIDIA Jetson factory lines."""

__version__ = "0.1.0"
