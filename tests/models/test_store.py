"""Model packages: export -> install -> list -> resolve -> load gives the run's own weights, and every bad
zip is refused in one line with nothing left in the models folder."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import struct
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors.torch import save_file

import coroseg
from coroseg.errors import CorosegError, InputError
from coroseg.models import packages, store
from coroseg.models.run import load_run, read_weights, save_weights
from coroseg.models.store import export_model, install_model, list_models, model_identity, models_home, resolve_model

sys.path.insert(0, str(Path(__file__).parents[1] / "infer"))
from infer_helpers import make_config, tiny_run_folder  # noqa: E402

FILES = ["config.json", "locator.safetensors", "model.json", "model.safetensors"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty models folder (COROSEG_HOME in tmp_path)."""
    monkeypatch.setenv("COROSEG_HOME", str(tmp_path / "coroseg-home"))
    folder = models_home()
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def run(tmp_path) -> Path:
    """A finished crop-model run folder named ``myrun`` (model + locator, coroseg_version "test")."""
    folder = tmp_path / "myrun"
    folder.mkdir()
    return tiny_run_folder(folder, "unet3d_crop")


@pytest.fixture
def package(run, tmp_path) -> Path:
    return export_model(run, tmp_path / "myrun.zip")


def contents(folder: Path) -> list[str]:
    """Everything under ``folder``, hidden entries included."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def members_of(package: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def repack(path: Path, members: dict[str, bytes], *, resign: bool = True, extra=()) -> Path:
    """Write ``members`` (then ``extra`` (name or ZipInfo, bytes) pairs) as a zip; with ``resign`` the
    manifest's checksums are recomputed for the listed files the zip holds, so a later check is reached."""
    members = dict(members)
    if resign and "model.json" in members:
        manifest = json.loads(members["model.json"])
        if isinstance(manifest.get("files"), dict):
            manifest["files"] = {n: sha(members[n]) if n in members else d for n, d in manifest["files"].items()}
        members["model.json"] = json.dumps(manifest).encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name, which one test writes
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in [*members.items(), *extra]:
                zf.writestr(name, data)
    return path


def edit_json(members: dict, member: str, **changes) -> dict:
    obj = json.loads(members[member])
    obj.update(changes)
    return {**members, member: json.dumps(obj).encode()}


def declare_size(path: Path, member: str, size: int) -> None:
    """Overwrite ``member``'s uncompressed size in the zip's central directory (offset 24 of its entry)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (n,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46:at + 46 + n] == member.encode():
            struct.pack_into("<I", data, at + 24, size)
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{member} not in {path}")


def states(folder: Path) -> list[dict[str, torch.Tensor]]:
    loaded = load_run(folder)
    return [net.state_dict() for net in (loaded.model, loaded.locator) if net is not None]


def wide_run(folder: Path) -> Path:
    """A grid run with ~100k weights, so that the weights, not the headers, make up a package's size."""
    from coroseg.models.registry import build_network, model_spec, network_config

    folder.mkdir()
    torch.manual_seed(1)
    cfg = make_config("unet3d_grid")
    cfg["network"] = network_config(model_spec("unet3d_grid"), channels=(16, 32, 64), num_res_units=1)
    save_weights(build_network(cfg["network"]), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


# --------------------------------------------------------------------------------------------- the folder


def test_models_home_is_coroseg_home_else_the_platform_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("COROSEG_HOME", str(tmp_path / "h"))
    assert models_home() == tmp_path / "h" / "models"
    monkeypatch.delenv("COROSEG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert models_home() == tmp_path / "xdg" / "coroseg" / "models"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # the XDG spec: a relative value is ignored
    assert models_home() == tmp_path / "user" / ".local" / "share" / "coroseg" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert models_home() == tmp_path / "user" / ".local" / "share" / "coroseg" / "models"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert models_home() == tmp_path / "user" / "Library" / "Application Support" / "coroseg" / "models"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert models_home() == tmp_path / "local" / "coroseg" / "models"


# ------------------------------------------------------------------------------------------- round trips


def test_export_install_list_resolve_load_gives_the_run_weights_exactly(home, run, package):
    held = members_of(package)
    assert sorted(held) == FILES
    manifest = json.loads(held["model.json"])
    weights_sha = sha((run / "model.safetensors").read_bytes())
    assert {k: manifest[k] for k in ("format", "format_version", "name", "version", "model", "source",
                                     "description")} == {
        "format": "coroseg-model", "format_version": 1, "name": "myrun", "version": "test", "model": "unet3d_crop",
        "source": "myrun", "description": ""}
    datetime.datetime.fromisoformat(manifest["created"])
    # float32: the run's weight files byte for byte; config.json in the current schema
    assert manifest["files"] == {"config.json": sha(held["config.json"]), "model.safetensors": weights_sha,
                                 "locator.safetensors": sha((run / "locator.safetensors").read_bytes())}
    assert held["model.safetensors"] == (run / "model.safetensors").read_bytes()
    assert json.loads(held["config.json"])["schema"] == 2

    folder = install_model(package)
    assert folder == home / "myrun"
    assert contents(home) == ["myrun"] + [f"myrun/{f}" for f in FILES]  # no staging folder left
    rows = list_models()
    assert [(r["name"], r["version"], r["model"], r["path"], r["created"]) for r in rows] == [
        ("myrun", "test", "unet3d_crop", folder, manifest["created"])]
    assert rows[0]["size_mb"] == pytest.approx(sum(f.stat().st_size for f in folder.iterdir()) / 1e6)
    assert resolve_model("myrun") == folder
    for got, want in zip(states(resolve_model("myrun")), states(run), strict=True):
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    identity = {"name": "myrun", "version": "test", "sha256": weights_sha}
    assert model_identity(folder) == identity
    assert model_identity(run) == identity  # no manifest: folder name, config version, checksum of the weights


def test_a_grid_model_package_has_no_locator(home, tmp_path):
    run = tmp_path / "grid"
    run.mkdir()
    tiny_run_folder(run, "unet3d_grid")
    folder = install_model(export_model(run, tmp_path / "grid.zip", name="g", version="7", description="a\ntest"))
    assert contents(folder) == ["config.json", "model.json", "model.safetensors"]
    assert model_identity(folder)["version"] == "7"
    assert [r["name"] for r in list_models()] == ["g"]
    (got,), (want,) = states(resolve_model("g")), states(run)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_half_package_is_half_the_size_and_loads_as_float32(home, tmp_path):
    run = wide_run(tmp_path / "wide")
    full = export_model(run, tmp_path / "full.zip")
    half = export_model(run, tmp_path / "half.zip", half=True)
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55
    stored = safetensors.torch.load(members_of(half)["model.safetensors"])
    assert {v.dtype for v in stored.values()} == {torch.float16}
    install_model(half)
    (got,), (want,) = states(resolve_model("wide")), states(run)
    assert sum(v.numel() for v in want.values()) > 90_000
    for k, w in want.items():
        assert got[k].dtype == w.dtype == torch.float32
        assert torch.equal(got[k], w.half().float())  # exactly float16's rounding of each weight
        assert torch.allclose(got[k], w, rtol=2**-11, atol=2**-24)


def test_install_under_another_name_and_force(home, run, package, tmp_path):
    install_model(package)
    before = contents(home)
    with pytest.raises(InputError, match=r"model 'myrun' is already installed \(.*\); pass --force to replace it"):
        install_model(package)
    assert contents(home) == before
    half = export_model(run, tmp_path / "half.zip", half=True, version="2")
    folder = install_model(half, force=True)
    assert contents(home) == before  # replaced in place: no old or staging folder left
    assert [r["version"] for r in list_models()] == ["2"]
    assert all(torch.equal(g, w.half().float()) for g, w in zip(states(folder)[0].values(), states(run)[0].values()))
    other = install_model(package, name="other")
    assert other == home / "other"
    assert model_identity(other)["name"] == "other"
    assert [r["name"] for r in list_models()] == ["myrun", "other"]


# -------------------------------------------------------------------------------------------- refusals


def test_export_refuses_an_unfinished_run(run, tmp_path):
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "status": "running"}))
    with pytest.raises(InputError, match=r"config\.json: training did not finish \(status 'running'\)"):
        export_model(run, tmp_path / "out" / "m.zip")
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_name_that_is_not_plain(tmp_path):
    run = tmp_path / "my run"
    run.mkdir()
    tiny_run_folder(run, "unet3d_grid")
    with pytest.raises(CorosegError, match=r"model name 'my run': expected 1-100 letters.*; choose one with --name"):
        export_model(run, tmp_path / "m.zip")
    for bad in ("../x", ".hidden", "a/b", "", "a b", "x" * 101):
        with pytest.raises(CorosegError, match="model name"):
            export_model(run, tmp_path / "m.zip", name=bad)
    with pytest.raises(CorosegError, match="'builtin' is reserved for the built-in model"):
        export_model(run, tmp_path / "m.zip", name="builtin")
    with pytest.raises(CorosegError, match="version .*expected one line"):
        export_model(run, tmp_path / "m.zip", name="ok", version="1\n2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my run"]  # nothing written
    assert export_model(run, tmp_path / "m.zip", name="my-run.v1_0").is_file()


def test_export_half_refuses_weights_outside_float16(run, tmp_path):
    state = read_weights(run / "model.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[0] = 1e6
    save_file(state, str(run / "model.safetensors"))
    with pytest.raises(InputError, match=rf"tensor '{key}' holds values up to 1e\+06, outside float16's range "
                                         r"\(\+-65504\); export without --half"):
        export_model(run, tmp_path / "m.zip", half=True)
    assert not (tmp_path / "m.zip").exists()
    assert export_model(run, tmp_path / "m.zip").is_file()


def _pickle() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    return buf.getvalue()


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def _without(members: dict, name: str) -> dict:
    return {k: v for k, v in members.items() if k != name}


#: (id, members -> members, resign the manifest, the message)
BAD_PACKAGES = [
    ("traversal", lambda m: {**m, "../evil.json": b"{}"}, True,
     r"member '\.\./evil\.json' leads out of the folder with '\.\.' \(path traversal refused\)"),
    ("traversal-backslash", lambda m: {**m, "..\\evil.json": b"{}"}, True, r"leads out of the folder with '\.\.'"),
    ("absolute", lambda m: {**m, "/etc/evil.json": b"{}"}, True,
     r"member '/etc/evil\.json' is an absolute path \(path traversal refused\)"),
    ("drive-letter", lambda m: {**m, "C:evil.json": b"{}"}, True,
     r"member 'C:evil\.json' has a drive letter \(path traversal refused\)"),
    ("sub-folder", lambda m: {**m, "sub/model.json": b"{}"}, True, r"member 'sub/model\.json' is in a sub-folder"),
    ("folder", lambda m: {**m, "sub/": b""}, True, r"member 'sub/' is a folder"),
    ("hidden", lambda m: {**m, ".x.json": b"{}"}, True, r"member '\.x\.json': expected a file name of letters"),
    ("python", lambda m: {**m, "evil.py": b"import os"}, True,
     r"member 'evil\.py' is not a \.json or \.safetensors file"),
    ("no-manifest", lambda m: _without(m, "model.json"), True, r"no model\.json manifest: not a model package"),
    ("manifest-lists-more", lambda m: _without(m, "locator.safetensors"), True,
     r"model\.json's file list differs from the zip's members: it lists locator\.safetensors that the zip lacks"),
    ("zip-holds-more", lambda m: {**m, "notes.json": b"{}"}, True,
     r"file list differs from the zip's members: the zip holds notes\.json that it does not list"),
    ("not-a-package-file", lambda m: edit_json({**m, "notes.json": b"{}"}, "model.json",
                                               files={**json.loads(m["model.json"])["files"], "notes.json": "0" * 64}),
     True, r"member 'notes\.json' is not part of this model package \(expected config\.json, locator\.safetensors"),
    ("tampered-weights", lambda m: {**m, "model.safetensors": _flip_last_byte(m["model.safetensors"])}, False,
     r"model\.safetensors: checksum differs from model\.json \(sha256 [0-9a-f]{12}\.\.\., listed [0-9a-f]{12}\.\.\.\): "
     r"the file was changed or damaged"),
    ("tampered-locator", lambda m: {**m, "locator.safetensors": _flip_last_byte(m["locator.safetensors"])}, False,
     r"locator\.safetensors: checksum differs"),
    ("tampered-config", lambda m: edit_json(m, "config.json", seed=1), False, r"config\.json: checksum differs"),
    ("config-rejected", lambda m: edit_json(m, "config.json", spacing=[0, 0, 0]), True,
     r"config\.json: spacing=\[0, 0, 0\]: expected"),
    ("config-unknown-key", lambda m: edit_json(m, "config.json", evil=1), True, r"config\.json: unknown key 'evil'"),
    ("config-not-json", lambda m: {**m, "config.json": b"{nope"}, True, r"config\.json: not valid JSON"),
    ("config-unfinished", lambda m: edit_json(m, "config.json", status="running"), True,
     r"config\.json: training did not finish \(status 'running'\)"),
    ("bad-safetensors-header", lambda m: {**m, "model.safetensors": bytes(64)}, True,
     r"model\.safetensors: not a safetensors file \(no JSON header\)"),
    ("truncated-safetensors", lambda m: {**m, "locator.safetensors": m["locator.safetensors"][:-100]}, True,
     r"locator\.safetensors: (truncated|corrupt)"),
    ("pickle-as-weights", lambda m: {**m, "model.safetensors": _pickle()}, True,
     r"model\.safetensors: this is a pickled PyTorch checkpoint"),
    ("weights-of-another-model", lambda m: {**m, "model.safetensors": m["locator.safetensors"]}, True,
     r"model\.safetensors: weights are from another model: tensor '.*' has shape"),
    ("manifest-not-json", lambda m: {**m, "model.json": b"[1,"}, False, r"model\.json: not valid JSON"),
    ("manifest-format", lambda m: edit_json(m, "model.json", format="other"), True,
     r"model\.json: format='other': expected 'coroseg-model'"),
    ("manifest-newer", lambda m: edit_json(m, "model.json", format_version=2), True,
     r"model\.json: format_version=2: written by a newer coroseg"),
    ("manifest-checksum-text", lambda m: edit_json(m, "model.json", files={**json.loads(m["model.json"])["files"],
                                                                           "config.json": "abc"}), False,
     r"model\.json: files\['config\.json'\]='abc': expected a sha256"),
    ("manifest-lacks-key", lambda m: {**m, "model.json": json.dumps(
        {k: v for k, v in json.loads(m["model.json"]).items() if k != "created"}).encode()}, False,
     r"model\.json: lacks key 'created'"),
    ("manifest-null-version", lambda m: edit_json(m, "model.json", version=None), True,
     r"model\.json: version None: expected text"),
    ("manifest-other-model", lambda m: edit_json(m, "model.json", model="unet2d_grid"), True,
     r"model\.json model='unet2d_grid' does not match config\.json model='unet3d_crop'"),
    ("bad-name", lambda m: edit_json(m, "model.json", name="bad name!"), True,
     r"model name 'bad name!': expected .*; install it under another with --name"),
    ("reserved-name", lambda m: edit_json(m, "model.json", name="builtin"), True,
     r"model name 'builtin' is reserved for the built-in model"),
]


@pytest.mark.parametrize("mutate,resign,message", [c[1:] for c in BAD_PACKAGES], ids=[c[0] for c in BAD_PACKAGES])
def test_a_bad_package_is_refused_in_one_line_and_installs_nothing(home, package, tmp_path, mutate, resign,
                                                                    message):
    bad = repack(tmp_path / "bad.zip", mutate(members_of(package)), resign=resign)
    with pytest.raises(InputError, match=message) as err:
        install_model(bad)
    assert err.value.path == bad and "\n" not in str(err.value)
    assert contents(home) == []


def _refused(zip_path: Path, home: Path, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        install_model(zip_path)
    assert err.value.path == zip_path and "\n" not in str(err.value)
    assert contents(home) == []


def test_the_good_package_repacked_installs(home, package, tmp_path):
    # the control of the refusals above: repack itself breaks nothing
    assert install_model(repack(tmp_path / "again.zip", members_of(package))) == home / "myrun"


def test_a_file_that_is_not_a_zip_is_refused(home, package, tmp_path):
    (tmp_path / "text.zip").write_text("not a zip")
    _refused(tmp_path / "text.zip", home, "not a zip file; expected a model package written by 'coroseg export-model'")
    (tmp_path / "cut.zip").write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    _refused(tmp_path / "cut.zip", home, "not a zip file")


def test_a_member_twice_or_a_link_is_refused(home, package, tmp_path):
    members = members_of(package)
    twice = repack(tmp_path / "twice.zip", members, extra=[("config.json", members["config.json"])])
    _refused(twice, home, r"member 'config\.json' appears twice")
    link = zipfile.ZipInfo("link.json")
    link.external_attr = 0o120777 << 16
    _refused(repack(tmp_path / "link.zip", members, extra=[(link, b"/etc/passwd")]), home,
             r"member 'link\.json' is a symbolic link")
    many = {f"m{i}.json": b"{}" for i in range(17)}
    _refused(repack(tmp_path / "many.zip", {**members, **many}), home,
             r"zip holds 21 members; a model package holds at most 4 files")


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(home, package, tmp_path):
    # a member declaring 3 GB (the zip itself is a few kB)
    bomb = repack(tmp_path / "bomb.zip", members_of(package))
    declare_size(bomb, "model.safetensors", 3_000_000_000)
    _refused(bomb, home, r"members unpack to \d+ bytes or more, over the 2147483648 a model package may hold "
                         r"\(a zip bomb\?\)")


def test_a_member_larger_than_its_declared_size_is_refused(home, package, tmp_path):
    lying = repack(tmp_path / "lying.zip", members_of(package))
    declare_size(lying, "model.safetensors", 100)  # the central directory says 100 bytes; the data holds more
    _refused(lying, home, r"member 'model\.safetensors' is corrupt or larger than its declared size \(Bad CRC-32")


def test_an_oversized_json_member_is_refused(home, package, tmp_path, monkeypatch):
    monkeypatch.setattr(packages, "MAX_JSON_BYTES", 100)
    _refused(package, home, r"model\.json unpacks to \d+ bytes; at most 100 for a JSON file")


# ------------------------------------------------------------------------------------------ naming models


def test_resolve_model_takes_a_run_folder_or_an_installed_name(home, run, package, tmp_path):
    assert resolve_model(run) == run and resolve_model(str(run)) == run
    with pytest.raises(CorosegError, match=r"^nope: not a folder: neither a run folder nor an installed model "
                                           r"\(installed: none; see 'coroseg models'\)$"):
        resolve_model("nope")
    install_model(package)
    install_model(package, name="second")
    with pytest.raises(CorosegError, match=r"installed: myrun, second;"):
        resolve_model("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorosegError, match="empty: a folder without config.json: neither a run folder nor"):
        resolve_model(tmp_path / "empty")
    assert resolve_model("second") == home / "second"


def test_the_builtin_model(monkeypatch, tmp_path, run):
    assert store._builtin_folder() == Path(coroseg.__file__).parent / "builtin"
    monkeypatch.setattr(store, "_builtin_folder", lambda: tmp_path / "absent")
    with pytest.raises(CorosegError, match="^the built-in model is not part of this install$"):
        resolve_model("builtin")
    monkeypatch.setattr(store, "_builtin_folder", lambda: run)
    assert resolve_model("builtin") == run


def test_list_models_skips_staging_and_broken_folders(home, package, caplog):
    install_model(package)
    (home / ".myrun.partial-x").mkdir()
    (home / "broken").mkdir()
    (home / "broken" / "model.json").write_text("{")
    (home / "stray.txt").write_text("")
    assert [r["name"] for r in list_models()] == ["myrun"]
    assert "broken/model.json: model.json: not valid JSON" in caplog.text


# ----------------------------------------------------------------------------------------------------- CLI


def cli(argv: list, capsys) -> tuple[int, str, str]:
    from coroseg.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as ex:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return ex.value.code, out, err


def test_cli_export_install_and_list(home, run, tmp_path, capsys):
    zip_path = tmp_path / "m.zip"
    code, out, err = cli(["export-model", run, "--out", zip_path, "--name", "mine", "--version", "2.0", "--half"],
                         capsys)
    assert (code, out, err) == (0, f"model package: {zip_path}\n", "")
    assert cli(["models"], capsys) == (0, f"no models installed (in {home})\n", "")
    assert cli(["install-model", zip_path], capsys) == (0, f"installed mine: {home / 'mine'}\n", "")
    code, out, _ = cli(["models"], capsys)
    head, row = out.splitlines()
    assert head.split() == ["name", "version", "model", "size", "MB", "created", "path"]
    assert row.split()[:3] == ["mine", "2.0", "unet3d_crop"] and row.endswith(str(home / "mine"))
    code, out, err = cli(["install-model", zip_path], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"coroseg: error: {zip_path}: model 'mine' is already installed")
    assert cli(["install-model", zip_path, "--force", "--name", "again"], capsys)[0] == 0
    assert [r["name"] for r in list_models()] == ["again", "mine"]


def test_cli_errors_are_one_line_exit_2(home, run, tmp_path, capsys):
    code, _, err = cli(["install-model", run / "config.json"], capsys)
    assert code == 2 and err == f"coroseg: error: {run / 'config.json'}: not a zip file; expected a model package " \
                                "written by 'coroseg export-model'\n"
    (run / "config.json").write_text(json.dumps({**json.loads((run / "config.json").read_text()), "status": "x"}))
    code, _, err = cli(["export-model", run, "--out", tmp_path / "m.zip"], capsys)
    assert code == 2 and err.count("\n") == 1 and "training did not finish" in err
    code, _, err = cli(["install-model", tmp_path / "absent.zip"], capsys)
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    assert contents(home) == []
