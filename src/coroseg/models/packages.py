"""Exporting a trained run as a model package (zip) and installing one: every member checked.

The package format, the models folder and how a model is named are in :mod:`coroseg.models.store`
(which re-exports :func:`export_model` and :func:`install_model`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import zipfile
import zlib
from pathlib import Path

import torch

from coroseg.errors import CorosegError, InputError
from coroseg.io.atomic import atomic_path, staged_folder
from coroseg.models.config import ConfigError, RunConfig
from coroseg.models.run import load_run, read_config, read_weights
from coroseg.models.store import (
    _CHUNK,
    FORMAT,
    FORMAT_VERSION,
    FP16_MAX,
    MANIFEST,
    MAX_JSON_BYTES,
    MAX_MEMBERS,
    MAX_TOTAL_BYTES,
    NAME_PATTERN,
    _parse_manifest,
    _text_problem,
    models_home,
    name_problem,
)


def export_model(run_dir: str | Path, out_zip: str | Path, *, name: str | None = None, version: str | None = None,
                 description: str = "", half: bool = False) -> Path:
    """Write the trained model of ``run_dir`` as a package ``out_zip`` (atomically); return ``out_zip``.

    Parameters
    ----------
    run_dir : path
        A finished run folder (config.json status "complete").
    out_zip : path
        The zip to write; an earlier file of that name is replaced only once the new one is complete.
    name : str, optional
        The package's name (default: the run folder's name); letters, digits, ``_ . -``.
    version : str, optional
        Free text (default: the coroseg version the run was trained with, else ``"1"``).
    description : str
    half : bool
        Store float32 weights as float16: half the size, loaded back as float32 (rounded to about 3
        significant digits). Refused when a weight lies outside float16's range.
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if cfg.status != "complete":
        raise InputError(f"training did not finish (status {cfg.status!r}); continue it with 'coroseg train "
                         "--resume' before exporting", run_dir / "config.json")
    name = run_dir.resolve().name if name is None else name
    problem = name_problem(name)
    if problem:
        raise CorosegError(f"{problem}; choose one with --name", run_dir)
    version = (cfg.coroseg_version or "1") if version is None else version
    for key, text, most in (("version", version, 200), ("description", description, 2000)):
        problem = _text_problem(text, most, one_line=key != "description")
        if problem:
            raise CorosegError(f"{key} {problem}")
    load_run(run_dir)  # the weights are safetensors and fit the networks config.json describes
    files = {"config.json": _json_bytes(cfg.to_dict())}
    for weights in _weight_files(cfg):
        path = run_dir / weights
        files[weights] = _half_bytes(path) if half else path.read_bytes()
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "name": name, "version": version,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "model": cfg.model, "files": {f: hashlib.sha256(data).hexdigest() for f, data in files.items()},
                "source": run_dir.resolve().name, "description": description}
    out_zip = Path(out_zip)
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for fname, data in [(MANIFEST, _json_bytes(manifest)), *files.items()]:
            info = zipfile.ZipInfo(fname, date_time=datetime.datetime.now().timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out_zip


def _weight_files(cfg: RunConfig) -> list[str]:
    return ["model.safetensors"] + ([cfg.locator.weights] if cfg.locator is not None else [])


def _half_bytes(path: Path) -> bytes:
    """``path``'s safetensors with float32/float64 tensors as float16 (metadata kept)."""
    from safetensors import safe_open
    from safetensors.torch import save

    state = read_weights(path)
    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata() or {})
    out = {}
    for key, tensor in state.items():
        if tensor.dtype in (torch.float32, torch.float64):
            largest = float(tensor.abs().max()) if tensor.numel() else 0.0
            if not largest <= FP16_MAX:
                raise InputError(f"tensor {key!r} holds values up to {largest:g}, outside float16's range "
                                 f"(+-{FP16_MAX:g}); export without --half", path)
            tensor = tensor.to(torch.float16)
        out[key] = tensor.contiguous()
    return save(out, metadata={**meta, "coroseg_dtype": "float16"})


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------------------------- install


def install_model(zip_path: str | Path, *, name: str | None = None, force: bool = False) -> Path:
    """Check the package ``zip_path`` and install it as ``models_home() / name``; return that folder.

    ``name`` defaults to the manifest's; ``force`` replaces a model installed under that name (the
    earlier one stays until the new one is complete). Every refusal is one :class:`InputError` naming
    the zip (see the module docstring); on any failure the models folder keeps only what it had.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise InputError("no such file" if not zip_path.exists() else "not a file", zip_path)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise InputError("not a zip file; expected a model package written by 'coroseg export-model'",
                         zip_path) from None
    with zf:
        infos = _members(zf, zip_path)
        manifest = _manifest(zf, infos, zip_path)
        name = manifest["name"] if name is None else name
        problem = name_problem(name)
        if problem:
            raise InputError(f"{problem}; install it under another with --name", zip_path)
        target = models_home() / name
        if target.exists() and not force:
            raise InputError(f"model {name!r} is already installed ({target}); pass --force to replace it",
                             zip_path)
        config = _read_member(zf, infos["config.json"], zip_path, MAX_JSON_BYTES)
        _check_digest("config.json", hashlib.sha256(config).hexdigest(), manifest, zip_path)
        cfg = _package_config(config, manifest, zip_path)
        expected = {MANIFEST, "config.json", *_weight_files(cfg)}
        for member in infos:
            if member not in expected:
                raise InputError(f"member {member!r} is not part of this model package (expected "
                                 f"{', '.join(sorted(expected))})", zip_path)
        missing = sorted(expected - set(infos))
        if missing:
            raise InputError(f"package lacks {missing[0]} (config.json names it)", zip_path)
        with staged_folder(target) as tmp:
            (tmp / "config.json").write_bytes(config)
            for weights in _weight_files(cfg):
                digest = _extract(zf, infos[weights], tmp / weights, zip_path)
                _check_digest(weights, digest, manifest, zip_path)
            _check_loads(tmp, zip_path)
            (tmp / MANIFEST).write_bytes(_json_bytes({**manifest, "name": name}))
    return target


def _members(zf: zipfile.ZipFile, zip_path: Path) -> dict[str, zipfile.ZipInfo]:
    """The zip's members by name, each checked to be a plain ``.json`` / ``.safetensors`` file at the root."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise InputError(f"zip holds {len(infos)} members; a model package holds at most 4 files", zip_path)
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        member = info.filename
        parts = re.split(r"[/\\]", member)
        if info.is_dir():
            raise InputError(f"member {member!r} is a folder; a model package holds files at the zip's root "
                             "only", zip_path)
        if member.startswith(("/", "\\")):
            raise InputError(f"member {member!r} is an absolute path (path traversal refused)", zip_path)
        if re.match(r"[A-Za-z]:", member):
            raise InputError(f"member {member!r} has a drive letter (path traversal refused)", zip_path)
        if ".." in parts:
            raise InputError(f"member {member!r} leads out of the folder with '..' (path traversal refused)",
                             zip_path)
        if len(parts) > 1:
            raise InputError(f"member {member!r} is in a sub-folder; a model package holds files at the zip's "
                             "root only", zip_path)
        if not NAME_PATTERN.fullmatch(member):
            raise InputError(f"member {member!r:.80}: expected a file name of letters, digits, '_', '.' or '-'",
                             zip_path)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise InputError(f"member {member!r} is a symbolic link", zip_path)
        if not member.endswith((".json", ".safetensors")):
            raise InputError(f"member {member!r} is not a .json or .safetensors file; a model package holds "
                             "nothing else", zip_path)
        if info.flag_bits & 0x1:
            raise InputError(f"member {member!r} is encrypted", zip_path)
        if member in members:
            raise InputError(f"member {member!r} appears twice", zip_path)
        members[member] = info
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise InputError(f"members unpack to {total} bytes or more, over the {MAX_TOTAL_BYTES} a model "
                             "package may hold (a zip bomb?)", zip_path)
    return members


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, zip_path: Path, most: int) -> bytes:
    if info.file_size > most:
        raise InputError(f"{info.filename} unpacks to {info.file_size} bytes; at most {most} for a JSON file",
                         zip_path)
    chunks: list[bytes] = []
    _copy(zf, info, zip_path, chunks.append)
    return b"".join(chunks)


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, zip_path: Path) -> str:
    """Unpack one member to ``dest``; return its sha256 (hex)."""
    digest = hashlib.sha256()
    with dest.open("wb") as out:
        def write(chunk: bytes) -> None:
            digest.update(chunk)
            out.write(chunk)
        _copy(zf, info, zip_path, write)
    return digest.hexdigest()


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, zip_path: Path, sink) -> None:
    """Stream a member to ``sink`` in chunks, never past its declared size."""
    seen = 0
    try:
        with zf.open(info) as src:
            while chunk := src.read(_CHUNK):
                seen += len(chunk)
                if seen > info.file_size:
                    raise InputError(f"member {info.filename!r} is larger than its declared size "
                                     f"({info.file_size} bytes; a zip bomb?)", zip_path)
                sink(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise InputError(f"member {info.filename!r} is corrupt or larger than its declared size ({exc})",
                         zip_path) from None


def _manifest(zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], zip_path: Path) -> dict:
    """The checked manifest; its file list must be exactly the zip's other members."""
    if MANIFEST not in infos:
        raise InputError(f"no {MANIFEST} manifest: not a model package written by 'coroseg export-model'",
                         zip_path)
    manifest = _parse_manifest(_read_member(zf, infos[MANIFEST], zip_path, MAX_JSON_BYTES), zip_path)
    listed, held = set(manifest["files"]), set(infos) - {MANIFEST}
    if listed != held:
        parts = [f"the zip holds {', '.join(sorted(held - listed))} that it does not list"] if held - listed else []
        parts += [f"it lists {', '.join(sorted(listed - held))} that the zip lacks"] if listed - held else []
        raise InputError(f"{MANIFEST}'s file list differs from the zip's members: " + "; ".join(parts), zip_path)
    return manifest


def _check_digest(fname: str, digest: str, manifest: dict, zip_path: Path) -> None:
    expected = manifest["files"][fname]
    if digest != expected:
        raise InputError(f"{fname}: checksum differs from {MANIFEST} (sha256 {digest[:12]}..., listed "
                         f"{expected[:12]}...): the file was changed or damaged", zip_path)


def _package_config(raw: bytes, manifest: dict, zip_path: Path) -> RunConfig:
    try:
        plain = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"config.json: not valid JSON ({str(exc):.80})", zip_path) from None
    try:
        cfg = RunConfig.from_dict(plain)
    except ConfigError as exc:
        raise InputError(f"config.json: {exc}", zip_path) from None
    if cfg.status != "complete":
        raise InputError(f"config.json: training did not finish (status {cfg.status!r})", zip_path)
    if manifest["model"] != cfg.model:
        raise InputError(f"{MANIFEST} model={manifest['model']!r:.60} does not match config.json "
                         f"model={cfg.model!r}", zip_path)
    return cfg


def _check_loads(folder: Path, zip_path: Path) -> None:
    """The unpacked weights are safetensors that fit the config's networks (as ``predict`` will load them)."""
    try:
        load_run(folder)
    except InputError as exc:
        where = exc.path.name if exc.path is not None else "package"
        raise InputError(f"{where}: {exc.problem}", zip_path) from None


# ------------------------------------------------------------------------------------------ list, resolve
