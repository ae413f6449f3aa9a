"""Untrusted files: weights only from safetensors, no code execution from configs or checkpoints.

The pickle ``model.safetensors`` refusal through the CLI is in the catalogue
(``test_bad_inputs.py::test_bad_input[predict-weights_pickle]``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from rel_helpers import TINY_TRAIN, split_dataset

SRC = Path(__file__).resolve().parents[2] / "src" / "coroseg"
DANGEROUS = re.compile(r"(?<![\w.])(eval|exec)\(|pickle\.loads?\(|marshal\.loads?\(|yaml\.load\(|"
                       r"(?<![\w])__import__\(")


def _code_lines():
    for path in sorted(SRC.rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if code.strip():
                yield path.relative_to(SRC.parent), n, code


def test_no_eval_exec_or_pickle_in_source():
    hits = [f"{p}:{n}: {c.strip()}" for p, n, c in _code_lines() if DANGEROUS.search(c)]
    assert hits == []


def test_every_torch_load_is_weights_only():
    src = {p: p.read_text(encoding="utf-8") for p in SRC.rglob("*.py")}
    calls = [(p, m.start()) for p, text in src.items() for m in re.finditer(r"torch\.load\(", text)]
    bad = []
    for p, start in calls:
        depth, i, text = 0, start + len("torch.load"), src[p]
        while True:  # the call's full argument list, across lines
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
            if depth == 0:
                break
        if "weights_only=True" not in text[start:i]:
            bad.append(f"{p.relative_to(SRC.parent)}: {text[start:i]}")
    assert calls and bad == []


def test_config_json_is_parsed_as_data(tmp_path, cli):
    """A config value that looks like code is never executed (json.loads only)."""
    from rel_helpers import run_folder, write_image

    run = run_folder(tmp_path)
    text = (run / "config.json").read_text().replace('"unet3d_grid"', '"__import__(\'os\').system(\'touch PWNED\')"', 1)
    (run / "config.json").write_text(text)
    res = cli(["predict", "--model", run, "--input", write_image(tmp_path / "s.nrrd"), "--output", tmp_path / "o"])
    assert res.code in (0, 2) and "Traceback" not in res.err  # the name is only a label; weights come from "network"
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


@pytest.mark.parametrize("damage", ["truncated", "pickle_object"])
def test_resume_with_a_damaged_optimizer_state_is_one_line(tmp_path, cli, damage):
    ds = split_dataset(tmp_path / "ds")
    out = tmp_path / "run"
    argv = ["train", "--data", ds, "--model", "unet3d_grid", "--out", out, "--epochs", "1", "--device", "cpu",
            "--no-progress", *TINY_TRAIN]
    assert cli(argv).code == 0
    opt = out / "optimizer.pt"
    if damage == "truncated":
        opt.write_bytes(opt.read_bytes()[:200])
    else:  # an object that would run code when unpickled without weights_only
        torch.save({"x": shutil.rmtree}, opt)
    res = cli(["train", "--data", ds, "--model", "unet3d_grid", "--out", out, "--resume", "--epochs", "2",
               "--device", "cpu", "--no-progress"])
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1 and "optimizer.pt" in res.err
