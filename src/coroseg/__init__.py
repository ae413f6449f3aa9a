"""coroseg: coronary artery segmentation in CTCA with a centerline prior."""

__version__ = "0.1.0"
