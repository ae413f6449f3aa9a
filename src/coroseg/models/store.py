"""Model packages: a trained model exported as a zip, installed into the user's models folder, named.

A package is a zip with every file at its root::

    model.json           manifest: {"format": "coroseg-model", "format_version": 1, "name", "version",
                         "created", "model", "files": {file name: sha256}, "source", "description"}
    config.json          the run's config (coroseg.models.config.RunConfig, current schema)
    model.safetensors    the weights (float32, or float16 with ``half=True``: loading converts back)
    locator.safetensors  crop models: the stage-1 locator (the name config.json's locator.weights gives)

:func:`install_model` unpacks one into ``models_home() / NAME`` (the same files); wherever a trained
model is taken, :func:`resolve_model` accepts a run folder, an installed name or ``"builtin"``.

Installing trusts nothing in the zip. Refused, as one :class:`~coroseg.errors.InputError` line naming the
zip: a member that is a folder, a link, a path (``..``, ``/``, ``\\``, a drive letter) or anything but
``.json`` / ``.safetensors``; members that unpack to more than :data:`MAX_TOTAL_BYTES` or past their
declared size (zip bombs); a manifest that is missing, malformed or lists other files than the zip holds;
a checksum that differs; a config that :class:`RunConfig` rejects; weights that are no safetensors file or
do not fit the config's networks; a name that is not plain; a name already installed (unless ``force``).
The files are unpacked into a hidden folder inside the models folder and renamed into place once every
check passed (:func:`coroseg.io.atomic.staged_folder`): nothing is ever half-installed.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import re
import sys
from pathlib import Path

from coroseg.errors import CorosegError, InputError
from coroseg.models.run import read_config

log = logging.getLogger(__name__)

FORMAT = "coroseg-model"
FORMAT_VERSION = 1
MANIFEST = "model.json"
#: the name :func:`resolve_model` gives the model shipped inside the package
BUILTIN = "builtin"
#: what the members of a package may unpack to, in all (a zip bomb is refused before anything is written)
MAX_TOTAL_BYTES = 2 * 1024**3
#: a package's JSON files are read into memory: at most this many bytes each
MAX_JSON_BYTES = 16 * 1024**2
#: a package holds 3 or 4 files; a zip with more members than this is refused without reading them
MAX_MEMBERS = 16
#: a model name: letters, digits, ``_ . -``, not starting with ``.`` (hidden folders are staging folders)
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
FP16_MAX = 65504.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def models_home() -> Path:
    """The folder installed models live in: ``$COROSEG_HOME/models`` when set, else the user data folder.

    Linux ``$XDG_DATA_HOME`` (or ``~/.local/share``), macOS ``~/Library/Application Support``, Windows
    ``%LOCALAPPDATA%``, each followed by ``coroseg/models``. The folder need not exist yet.
    """
    home = os.environ.get("COROSEG_HOME")
    if home:
        return Path(home).expanduser() / "models"
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"  # XDG: absolute only
    return base / "coroseg" / "models"


def name_problem(name) -> str | None:
    """Why ``name`` cannot name an installed model, or None."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        return (f"model name {str(name)!r:.60}: expected 1-100 letters, digits, '_', '.' or '-', "
                "not starting with '.'")
    if name == BUILTIN:
        return f"model name {name!r} is reserved for the built-in model"
    return None


# ------------------------------------------------------------------------------------------------ export


def _text_problem(text, most: int, *, one_line: bool) -> str | None:
    if not isinstance(text, str):
        return f"{text!r:.60}: expected text"
    if len(text) > most:
        return f"is {len(text)} characters long; at most {most}"
    if any(ord(c) < 32 and not (c in "\n\t" and not one_line) for c in text):
        return f"{text!r:.60}: expected one line without control characters"
    return None


def _parse_manifest(raw: bytes, path: Path) -> dict:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{MANIFEST}: not valid JSON ({str(exc):.80})", path) from None
    problem = manifest_problem(manifest)
    if problem:
        raise InputError(f"{MANIFEST}: {problem}", path)
    return manifest


def manifest_problem(manifest) -> str | None:
    """Why ``manifest`` (a parsed model.json) is not a version-1 package manifest, or None."""
    if not isinstance(manifest, dict):
        return f"expected a JSON object, found {type(manifest).__name__}"
    if manifest.get("format") != FORMAT:
        return f"format={manifest.get('format')!r:.60}: expected {FORMAT!r}"
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"format_version={version!r:.60}: expected {FORMAT_VERSION}"
    if version > FORMAT_VERSION:
        return (f"format_version={version}: written by a newer coroseg (this one reads version {FORMAT_VERSION}); "
                "upgrade coroseg")
    for key in ("name", "version", "created", "model", "source", "description"):
        if key not in manifest:
            return f"lacks key {key!r}"
        problem = _text_problem(manifest[key], 2000 if key == "description" else 200, one_line=key != "description")
        if problem:
            return f"{key} {problem}"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return f"files: expected an object of file name: sha256, found {type(files).__name__}"
    for fname, digest in files.items():
        if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
            return f"files[{fname!r:.60}]={digest!r:.70}: expected a sha256 (64 lowercase hex digits)"
    for fname in ("config.json", "model.safetensors"):
        if fname not in files:
            return f"files lacks {fname!r}"
    return None


def list_models() -> list[dict]:
    """The installed models, by name: ``{"name", "version", "model", "size_mb", "path", "created"}``.

    A folder whose ``model.json`` cannot be read is left out with a warning in the log.
    """
    home = models_home()
    if not home.is_dir():
        return []
    rows = []
    for folder in sorted(home.iterdir()):
        if folder.name.startswith(".") or not (folder / MANIFEST).is_file():
            continue  # staging folders, stray files
        try:
            manifest = _installed_manifest(folder)
        except InputError as exc:
            log.warning("skipped %s", exc)
            continue
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        rows.append({"name": folder.name, "version": manifest["version"], "model": manifest["model"],
                     "size_mb": size / 1e6, "path": folder, "created": manifest["created"]})
    return rows


def format_models(rows: list[dict]) -> str:
    """``list_models`` as a plain-text table (``coroseg models``)."""
    if not rows:
        return f"no models installed (in {models_home()})"
    head = ("name", "version", "model", "size MB", "created", "path")
    table = [head] + [(r["name"], r["version"], r["model"], f"{r['size_mb']:.2f}", r["created"][:10], str(r["path"]))
                      for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]) for row in table)


def _installed_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path) from None
    return _parse_manifest(raw, path)


def _builtin_folder() -> Path:
    return Path(str(importlib.resources.files("coroseg") / BUILTIN))


def resolve_model(spec: str | Path) -> Path:
    """The folder of the model ``spec`` names: a run folder, ``"builtin"`` or an installed model's name.

    Raises :class:`CorosegError` (one line) when ``spec`` is none of them; the message lists the
    installed names.
    """
    path = Path(spec)
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if str(spec) == BUILTIN:
        folder = _builtin_folder()
        if not (folder / "config.json").is_file():
            raise CorosegError("the built-in model is not part of this install")
        return folder
    if name_problem(str(spec)) is None:
        folder = models_home() / str(spec)
        if (folder / "config.json").is_file() and (folder / MANIFEST).is_file():
            return folder
    names = [r["name"] for r in list_models()]
    installed = ", ".join(names) if names else "none"
    why = "a folder without config.json" if path.is_dir() else "not a folder"
    raise CorosegError(f"{why}: neither a run folder nor an installed model (installed: {installed}; "
                       f"see 'coroseg models')", spec)


def model_identity(folder: str | Path) -> dict:
    """``{"name", "version", "sha256"}`` of a model folder (the sha256 of its model.safetensors, hex).

    From ``model.json`` when there is one (installed models), else the folder's name, the
    config's ``coroseg_version`` and the weights' checksum. Show ``sha256[:12]``.
    """
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        manifest = _installed_manifest(folder)
        return {"name": manifest["name"], "version": manifest["version"],
                "sha256": manifest["files"]["model.safetensors"]}
    cfg = read_config(folder)
    weights = folder / "model.safetensors"
    digest = hashlib.sha256()
    try:
        with weights.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read weights ({exc.strerror})", weights) from None
    return {"name": folder.resolve().name, "version": cfg.coroseg_version, "sha256": digest.hexdigest()}



def model_provenance(folder: str | Path | None) -> dict:
    """What names a model in outputs (summary.json, metrics.csv, report.html): ``model_name``,
    ``model_version``, ``model_sha256`` (of its model.safetensors); ``{}`` for a run made in memory."""
    if folder is None:
        return {}
    ident = model_identity(folder)
    return {"model_name": ident["name"], "model_version": ident["version"], "model_sha256": ident["sha256"]}


__all__ = ["models_home", "list_models", "model_provenance", "format_models", "resolve_model",
           "model_identity", "name_problem", "manifest_problem", "FORMAT", "FORMAT_VERSION", "MANIFEST",
           "MAX_TOTAL_BYTES"]


def __getattr__(name: str):
    # exporting and installing live in coroseg.models.packages; their names stay importable from here
    if name in ("export_model", "install_model"):
        from coroseg.models import packages

        return getattr(packages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
