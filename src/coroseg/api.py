"""The Python API: ``coroseg.predict(image, model)`` and ``coroseg.Predictor`` (weights loaded once).

What goes in comes back in kind: a path (a volume file, a DICOM series folder or a folder of
scans) writes the outputs ``coroseg predict`` writes into ``output`` and hands back their paths;
a SimpleITK image gives a SimpleITK image and a :class:`~coroseg.io.volume.Volume` a
``Volume``, on the input's own grid (origin, spacing, direction kept), nothing written::

    import coroseg

    result = coroseg.predict("scan.nii.gz", model="runs/crop", output="out")  # files in out/
    result.seg                      # Path("out/scan_seg.nii.gz")

    predictor = coroseg.Predictor("runs/crop", device="cuda")  # for many scans: load once
    for image in images:            # SimpleITK images
        mask = predictor(image).seg  # a SimpleITK image on the same grid

``Result.centerline`` is the centerline of the segmentation (a
:class:`~coroseg.io.centerline.CenterlineGraph` in LPS mm; for a path, the ``.vtp`` written)
and ``Result.summary`` the entry ``summary.json`` has for the scan (timings, volume, length,
branches, the source of the prior).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from coroseg.errors import CorosegError
from coroseg.infer.postprocess import PostprocessOptions


@dataclasses.dataclass
class Result:
    """One scan's prediction, in the kind of the input (a path, a SimpleITK image or a Volume)."""

    seg: Any                   # uint8 {0, 1} mask
    prob: Any | None           # float32 vessel probability (``save_prob=True``), else None
    centerline: Any | None     # CenterlineGraph (in memory) or the .vtp path (files); None if nothing found
    summary: dict


class Predictor:
    """A trained model loaded once, called per scan: ``Predictor(model)(image)``.

    Parameters
    ----------
    model : path, name or LoadedRun
        A run folder written by ``coroseg train``, an installed model's name, ``"builtin"`` (the
        default: the model shipped with coroseg), or a run loaded with :func:`coroseg.models.load_run`.
    device : {"auto", "cpu", "cuda"}
    centerline : "auto", "none", path or CenterlineGraph
        The prior of crop models (``auto``: the run's locator); see :func:`coroseg.infer.predict_volume`.
    postprocess : PostprocessOptions
    iterate : bool
        Crop models: add crops where vessels leave the covered region.
    precision : {"auto", "fp32", "bf16"}
    batch_size : int
    tta : bool
        Test-time mirroring (4x the time; see :func:`coroseg.infer.predict_volume`).
    """

    def __init__(self, model: Any = "builtin", *, device: str = "auto", centerline: Any = "auto",
                 postprocess: PostprocessOptions = PostprocessOptions(), iterate: bool = True,
                 precision: str = "auto", batch_size: int = 4, tta: bool = False):
        from coroseg.infer.pipeline import load, resolve_device

        self.device = resolve_device(device)
        self.run = load(model, self.device)
        self.options = {"centerline": centerline, "postprocess": postprocess, "iterate": iterate,
                        "precision": precision, "batch_size": batch_size, "tta": tta}

    def __call__(self, image: Any, output: str | Path | None = None, *, save_prob: bool = False, mesh: bool = False,
                 skip_complete: bool = False, output_format: str = "input") -> Result | list[Result]:
        """Segment ``image`` (path, SimpleITK image or Volume); a folder of scans gives a list.

        ``output_format`` (scans on disk): ``"input"`` (the input's extension), ``"nii.gz"``,
        ``"nrrd"``, ``"mha"`` or ``"seg.nrrd"`` (a 3D Slicer segmentation).
        """
        if isinstance(image, (str, Path)):
            return self._files(Path(image), output, save_prob=save_prob, mesh=mesh, skip_complete=skip_complete,
                               output_format=output_format)
        if output is not None or mesh or skip_complete or output_format != "input":
            raise CorosegError("output, mesh, skip_complete and output_format are for scans on disk; an image in "
                               "memory comes back in memory")
        return self._memory(image, save_prob=save_prob)

    predict = __call__

    def _files(self, path: Path, output, **kwargs) -> Result | list[Result]:
        from coroseg.infer.files import predict as predict_files

        if output is None:
            raise CorosegError("a scan on disk needs an output folder (output=...)", path)
        opts = self.options
        summaries = predict_files(self.run, path, output, centerline=opts["centerline"], device=self.device,
                                  postprocess=opts["postprocess"], iterate=opts["iterate"],
                                  batch_size=opts["batch_size"], precision=opts["precision"], tta=opts["tta"],
                                  progress=False,
                                  **kwargs)
        out = Path(output)
        results = []
        for s in summaries:
            files = s.get("files", {})
            results.append(Result(seg=out / files["seg"], prob=out / files["prob"] if "prob" in files else None,
                                  centerline=out / files["centerline.vtp"] if "centerline.vtp" in files else None,
                                  summary=s))
        from coroseg.infer.pipeline import find_inputs

        one_scan = not path.is_dir() or find_inputs(path) == [path]  # a file or one DICOM series
        return results[0] if one_scan and results else results

    def _memory(self, image: Any, *, save_prob: bool) -> Result:
        from coroseg.infer.outputs import geometry_dict, mask_stats
        from coroseg.infer.pipeline import predict_volume
        from coroseg.io.volume import Volume

        vol = _as_volume(image)
        o = self.options
        pred = predict_volume(self.run, vol, centerline=o["centerline"], device=self.device,
                              postprocess_options=o["postprocess"], iterate=o["iterate"], batch_size=o["batch_size"],
                              precision=o["precision"], keep_prob=save_prob, tta=o["tta"])
        summary = {**pred.info, **mask_stats(pred.seg, pred.graph), "geometry": geometry_dict(pred.seg),
                   "timings_s": pred.timings}
        back = (lambda v: v) if isinstance(image, Volume) else (lambda v: v.to_sitk())
        return Result(seg=back(pred.seg), prob=None if pred.prob is None else back(pred.prob),
                      centerline=pred.graph, summary=summary)


def predict(image: Any, model: Any = "builtin", output: str | Path | None = None, *, device: str = "auto",
            centerline: Any = "auto", save_prob: bool = False, mesh: bool = False, output_format: str = "input",
            **options) -> Result | list[Result]:
    """Segment the coronary arteries of ``image`` with ``model``; see the module docstring.

    ``model``: a run folder, an installed model's name or ``"builtin"`` (the default: the
    phantom-trained model shipped with coroseg, ``docs/model-card.md``). ``options`` are those
    of :class:`Predictor` (``postprocess``, ``iterate``, ``precision``, ``batch_size``, ``tta``).
    For many scans build a :class:`Predictor` once instead (the weights are read at every call here).
    """
    predictor = Predictor(model, device=device, centerline=centerline, **options)
    return predictor(image, output, save_prob=save_prob, mesh=mesh, output_format=output_format)


def _as_volume(image: Any):
    import SimpleITK as sitk

    from coroseg.io.volume import Volume, geometry_problem

    if isinstance(image, Volume):
        return image
    if isinstance(image, sitk.Image):
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise CorosegError(f"expected a 3D single-channel image, found {image.GetDimension()}D with "
                               f"{image.GetNumberOfComponentsPerPixel()} component(s)")
        vol = Volume.from_sitk(image)
        problem = geometry_problem(vol)
        if problem:
            raise CorosegError(f"image geometry: {problem}")
        return vol
    raise CorosegError(f"image must be a path, a SimpleITK image or a coroseg Volume, found {type(image).__name__}")


__all__ = ["predict", "Predictor", "Result"]
