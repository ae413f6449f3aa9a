"""Reports and figures: slice overlays, radius profiles, 3D TP/FP/FN renders, training curves, ``report.html``.

Function first: plain arrays + ``spacing`` in, one file out (written atomically).

- :func:`coroseg.report.figures.overlay_figure` — axial/coronal slices + slab MIP with contours,
  orientation letters and a mm ruler
- :func:`coroseg.report.figures.radius_profile_figure` — radius along the main branches
- :func:`coroseg.report.render3d.render3d_gif` / :func:`~coroseg.report.render3d.render3d_png`
- :func:`coroseg.report.figures.training_curves` — loss/metric curves from a ``metrics.csv``
- :func:`coroseg.report.html.write_report` — the self-contained ``report.html`` (``coroseg report``)
"""

from coroseg.report.figures import overlay_figure, radius_profile_figure, training_curves
from coroseg.report.html import CaseFiles, find_case_triplets, markdown_to_html, write_report
from coroseg.report.render3d import render3d_gif, render3d_png

__all__ = ["overlay_figure", "radius_profile_figure", "training_curves", "render3d_gif", "render3d_png",
           "write_report", "find_case_triplets", "markdown_to_html", "CaseFiles"]
