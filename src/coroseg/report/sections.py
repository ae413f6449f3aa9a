"""The sections of ``report.html`` (:func:`coroseg.report.html.write_report`), one function each.

Every section function returns its HTML (``""`` when its inputs are missing) and appends a
one-line note for anything it could not draw; a figure that fails is logged and noted, never
fatal, so the metrics still reach the page. The per-case parts (table, figures, crops) are in
:mod:`coroseg.report.cases`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coroseg.errors import CorosegError, InputError

log = logging.getLogger("coroseg.report.html")

#: WebP quality of embedded figures: contours and text stay sharp, a 1250 x 314 overlay is ~40 KB
#: (its PNG: ~240 KB); the PNG/GIF files themselves stay beside the report in figures/
WEBP_QUALITY = 88
#: animations (the 3D turn: ~120 KB instead of a ~470 KB GIF) tolerate a little more loss
WEBP_QUALITY_ANIMATED = 72


def _webp(path: Path) -> bytes | None:
    """The figure as WebP, lossy or lossless whichever is smaller (animations keep their frames); None
    when this Pillow cannot write WebP."""
    from PIL import Image, features

    if not features.check("webp"):
        return None
    with Image.open(path) as im:
        animated = getattr(im, "n_frames", 1) > 1
        src = im if animated else im.convert("RGB")
        outs = []
        for opts in ({"quality": WEBP_QUALITY_ANIMATED if animated else WEBP_QUALITY}, {"lossless": True}):
            buf = io.BytesIO()
            src.save(buf, format="WEBP", method=4, **({"save_all": True, "loop": 0} if animated else {}), **opts)
            outs.append(buf.getvalue())
    return min(outs, key=len)


def embed_image(path: Path, alt: str) -> str:
    """``<img>`` with the figure inline (a ``data:`` URI), re-encoded as WebP when that is smaller.

    The page stays one self-contained file (mail it, attach it) at ~0.25 MB a fully drawn case
    (overlay, radius profile, 3D turn) instead of ~1 MB with the PNG and GIF bytes.
    """
    raw = path.read_bytes()
    mime = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
            ".webp": "image/webp"}[path.suffix.lower()]
    small = _webp(path) if mime in ("image/png", "image/gif") else None
    if small is not None and len(small) < len(raw):
        raw, mime = small, "image/webp"
    data = base64.b64encode(raw).decode("ascii")
    return f'<img src="data:{mime};base64,{data}" alt="{html.escape(alt)}">'


def markdown_to_html(text: str) -> str:
    """Render Markdown (CommonMark + pipe tables, :mod:`markdown_it`) for the page; raw HTML is escaped.

    Headings move down two levels (``#`` -> ``<h3>``): the page already has its ``<h1>`` and
    section ``<h2>``; tables get ``class="md"``.

    Examples
    --------
    >>> markdown_to_html("# T")
    '<h3>T</h3>\n'
    """
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for tok in tokens:
        if tok.type in ("heading_open", "heading_close"):
            tok.tag = f"h{min(6, int(tok.tag[1]) + 2)}"
        elif tok.type == "table_open":
            tok.attrSet("class", "md")
    return md.renderer.render(tokens, md.options, {})


def _fmt_value(v: str) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    if math.isnan(f):
        return "–"
    if float(f).is_integer() and abs(f) < 1e6 and "." not in str(v):
        return str(int(f))
    return f"{f:.3f}" if abs(f) < 1000 else f"{f:.1f}"


def _csv_table(cols: Sequence[str], rows: Sequence[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{_fmt_value(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def _mean_rows(cols: Sequence[str], rows: Sequence[dict]) -> list[dict]:
    """Mean ± std per numeric column, one row per ``centerline`` value (or one overall row)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get("centerline", "") or "all", []).append(r)
    out = []
    for g, rs in groups.items():
        row = {cols[0]: f"mean ± std ({g}, n={len(rs)})"}
        for c in cols[1:]:
            vals = []
            for r in rs:
                try:
                    vals.append(float(r.get(c, "")))
                except (TypeError, ValueError):
                    pass
            fin = [v for v in vals if math.isfinite(v)]
            if fin:
                s = f"{np.mean(fin):.3f} ± {np.std(fin):.3f}"
                row[c] = s + (f" ({len(vals) - len(fin)} inf)" if len(fin) < len(vals) else "")
        out.append(row)
    return out


def find_metrics_csv(test_dir: Path) -> Path | None:
    """The per-case CSV of a test folder: ``metrics.csv`` or ``per_case.csv`` with a ``case_id`` column."""
    from coroseg.report.figures import read_metrics_csv

    for name in ("metrics.csv", "per_case.csv"):
        p = test_dir / name
        if p.is_file():
            cols, _ = read_metrics_csv(p)
            if "case_id" in cols:
                return p
    return None


def _config_rows(cfg: dict) -> list[tuple[str, str]]:
    def g(*keys, default=None):
        d = cfg
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return default
            d = d[k]
        return d

    def fmt(v) -> str:
        if v is None:
            return "–"
        if isinstance(v, (list, tuple)):
            return " × ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
        if isinstance(v, float):
            return f"{v:g}"
        return str(v)

    rows = [("model", fmt(g("model"))), ("dimensions", fmt(g("dims"))), ("sampler", fmt(g("sampler"))),
            ("attention channel", fmt(g("attention"))), ("input channels", fmt(g("in_channels"))),
            ("patch size (voxels, z×y×x)", fmt(g("patch_size"))), ("spacing (mm, z×y×x)", fmt(g("spacing"))),
            ("intensity clip (HU)", fmt(g("intensity", "clip"))),
            ("locator", "yes" if g("locator") else "no"),
            ("crop method", fmt(g("crop", "method"))),
            ("data", f"{fmt(g('data', 'root'))} ({fmt(g('data', 'layout'))})"),
            ("seed", fmt(g("seed")))]
    train = g("train", default={}) or {}
    if isinstance(train, dict) and train:
        # with a patch budget the budget sets the number of epochs and "epochs" is never used:
        # showing it (epochs=100 for a run that trained 61) misleads; the Training section has the count
        budget = train.get("patch_budget") is not None
        rows.append(("training settings", ", ".join(f"{k}={fmt(v)}" for k, v in train.items()
                                                    if not isinstance(v, (dict, list))
                                                    and not (budget and k == "epochs"))))
    rows.append(("coroseg version", fmt(g("coroseg_version"))))
    return [(k, v) for k, v in rows if v not in ("–", "– (–)")]


def _safe(what: str, notes: list[str], fn, *args, **kwargs):
    """Run a figure function; on failure log it, add a note and return None."""
    try:
        return fn(*args, **kwargs)
    except (CorosegError, ValueError, RuntimeError, OSError, MemoryError, KeyError, TypeError) as exc:
        log.warning("report: %s failed: %s", what, exc)
        notes.append(f"{what}: not drawn ({exc})")
        return None


def read_run_config(run_dir: Path) -> dict:
    """The run's ``config.json`` as JSON (empty without one): the report also describes unfinished runs."""
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", path) from None


def _identity_rows(run_dir: Path) -> list[tuple[str, str]]:
    """The model that produced the report's results: name, version, sha256 of its weights."""
    from coroseg.models.store import model_provenance

    try:
        ident = model_provenance(run_dir)
    except CorosegError:  # an unfinished run without weights yet
        return []
    return [("model (name, version, weights sha256)",
             f"{ident['model_name']}, {ident['model_version']}, {ident['model_sha256'][:12]}")]


def config_section(cfg: dict, run_dir: Path) -> str:
    """1. the run configuration table."""
    if not cfg:
        return (f'<section><h2>Run configuration</h2><p class="note">no config.json in '
                f'<code>{html.escape(str(run_dir))}</code></p></section>')
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                   for k, v in _identity_rows(run_dir) + _config_rows(cfg))
    return f'<section><h2>Run configuration</h2><table class="kv">{rows}</table></section>'


def metrics_section(test_dir: Path | None) -> str:
    """2. the test results: ``summary.md``, and every row of the metrics CSV (folded away)."""
    if test_dir is None:
        return ""
    body = []
    if (test_dir / "summary.md").is_file():
        body.append(markdown_to_html((test_dir / "summary.md").read_text(encoding="utf-8")))
    mcsv = find_metrics_csv(test_dir)
    if mcsv is not None:
        from coroseg.report.figures import read_metrics_csv

        cols, rows = read_metrics_csv(mcsv)
        if not (test_dir / "summary.md").is_file() and rows:
            body.insert(0, "<h3>Summary</h3>" + _csv_table(cols, _mean_rows(cols, rows)))
        body.append(f"<details><summary>every metric of every case ({html.escape(mcsv.name)}, {len(rows)} rows)"
                    f"</summary>{_csv_table(cols, rows)}</details>")
    if not body:
        body.append('<p class="note">no summary.md or per-case metrics CSV in the test folder</p>')
    return (f"<section><h2>Test results</h2><p>Test folder: <code>{html.escape(str(test_dir))}</code></p>"
            + "\n".join(body) + "</section>")


def _epochs_trained(metrics_csv: Path) -> dict[str, dict]:
    """Per phase of a training log: epochs run, patches seen, best validation Dice and its epoch, and
    which centerline the validation used (``val_centerline``; :func:`coroseg.train.curves.val_source`)."""
    from coroseg.report.figures import _float, read_metrics_csv
    from coroseg.train.curves import val_source

    cols, rows = read_metrics_csv(metrics_csv)
    if "epoch" not in cols:
        return {}
    out: dict[str, dict] = {}
    for r in rows:
        ph = out.setdefault(r.get("phase") or "model", {"epochs": 0, "patches": math.nan, "best": math.nan,
                                                          "best_epoch": None, "sources": {}})
        epoch, patches, d = _float(r["epoch"]), _float(r.get("patches")), _float(r.get("val_dice"))
        if math.isfinite(epoch):
            ph["epochs"] = max(ph["epochs"], int(epoch))
        if math.isfinite(patches):  # cumulative: the last row's count is the phase's
            ph["patches"] = patches
        if math.isfinite(d):
            ph["sources"][val_source(r)] = None
            if ph["best_epoch"] is None or d > ph["best"]:
                ph["best"], ph["best_epoch"] = d, r["epoch"]
    return out


def training_rows(cfg: dict, run_dir: Path) -> list[tuple[str, str, str, str]]:
    """``(phase, epochs trained, best validation Dice, why it stopped)`` per phase, in training order; the
    Dice cell names the validation's centerline, e.g. ``0.812 (epoch 3; automatic centerline)``."""
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    stopped = train.get("stopped") if isinstance(train.get("stopped"), dict) else {}
    log_csv = run_dir / "metrics.csv"
    done = _epochs_trained(log_csv) if log_csv.is_file() else {}
    phases = list(dict.fromkeys([*(train.get("phase_order") or []), *done, *stopped]))
    running = cfg.get("status") == "running"
    rows = []
    for ph in phases:
        d = done.get(ph, {})
        epochs = f"{d['epochs']}" + (f" ({d['patches']:.0f} patches)" if math.isfinite(d["patches"]) else "") \
            if d else "–"
        best = "–"
        if d and d["best_epoch"] is not None:  # says which prior: an ORACLE-centerline Dice is an upper bound
            best = f"{d['best']:.3f} (epoch {d['best_epoch']}; {' / '.join(d['sources'])})"
        why = stopped.get(ph) or ("still training (or interrupted: resume with --resume)" if running
                                  else "not recorded (a run made before coroseg kept the reason)")
        rows.append((ph, epochs, best, why))
    return rows


def training_section(cfg: dict, run_dir: Path, fig_dir: Path, notes: list[str]) -> str:
    """3. training: epochs trained and why each phase stopped (``config.json`` ``train.stopped``), the curves."""
    rows = training_rows(cfg, run_dir)
    table = ""
    if rows:
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        table = ('<table class="kv"><thead><tr><th>phase</th><th>epochs trained</th>'
                 '<th>best validation Dice (centerline used)</th>'
                 f"<th>why it stopped</th></tr></thead><tbody>{body}</tbody></table>")
    curves = run_dir / "training_curves.png"
    if not curves.is_file() and (run_dir / "metrics.csv").is_file():
        from coroseg.report.figures import training_curves

        curves = _safe("training curves", notes, training_curves, run_dir / "metrics.csv",
                       fig_dir / "training_curves.png")
    fig = ""
    if curves is not None and Path(curves).is_file():
        fig = (f"<figure>{embed_image(Path(curves), 'training curves')}<figcaption>training loss and validation "
               "Dice per epoch (validation runs the prediction code on whole validation scans; each curve names "
               "its centerline: automatic, ORACLE or none)</figcaption></figure>")
    if not (table or fig):
        return ""
    return f"<section><h2>Training</h2>{table}{fig}</section>"


def _synth_manifest(root: Path | None) -> dict | None:
    """The ``manifest.json`` that ``coroseg synth`` writes at a dataset's root (or one folder up), if any."""
    if root is None:
        return None
    for folder in (Path(root), Path(root).parent):
        try:
            m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(m, dict) and m.get("generator") == "coroseg.synth":
            return m
    return None


def synthetic_notice(cfg: dict, data_dir: Path | None) -> str:
    """A banner when the training or test data are phantoms made by ``coroseg synth``.

    The signal is the dataset's ``manifest.json`` with ``"generator": "coroseg.synth"`` (written
    with every synthetic dataset, never by a real one), looked up at the run's training data
    root and at the test data root. Nothing is said when neither folder can be found.
    """
    data = cfg.get("data") if isinstance(cfg.get("data"), dict) else {}
    roots = {"training": Path(data["root"]) if data.get("root") else None, "test": data_dir}
    found = {what: m for what, root in roots.items() if (m := _synth_manifest(root)) is not None}
    if not found:
        return ""
    parts = []
    for what, m in found.items():
        kind = "rendered around real coronary trees" if m.get("anatomy_dir") else "procedural coronary trees"
        shift = ", appearance outside the training ranges" if str(m.get("appearance", "")).startswith("shifted") else ""
        parts.append(f"{what} data: {m.get('n_cases', '?')} phantoms ({kind}{shift}; preset "
                     f"{m.get('preset', '?')}, seed {m.get('seed', '?')})")
    return ('<section class="synthetic"><h2>Synthetic data</h2><p>The '
            + " and ".join(sorted(found)) + " cases are <strong>synthetic CT phantoms</strong> made by "
            "<code>coroseg synth</code>, not patient scans: " + html.escape("; ".join(parts)) + ". Numbers on this "
            "page measure the method on phantoms and are not real-data results (README, Limitations).</p></section>")


def notes_section(notes: list[str]) -> str:
    """What was left out and why (last, so every section's notes are in)."""
    if not notes:
        return ""
    return ("<section><h2>Notes</h2><ul>" + "".join(f"<li class=\"note\">{html.escape(n)}</li>" for n in notes)
            + "</ul></section>")


__all__ = ["read_run_config", "config_section", "metrics_section", "training_section", "training_rows",
           "synthetic_notice", "notes_section", "find_metrics_csv", "embed_image", "markdown_to_html"]
