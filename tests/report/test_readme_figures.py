"""The README's figures: committed under docs/images, the GIFs animated, small, and captioned auto or ORACLE."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
#: ![caption](docs/images/file)
SHOWN = re.findall(r"!\[([^\]]*)\]\((docs/images/[^)]+)\)", README)


def test_every_shown_figure_is_committed():
    assert SHOWN, "README shows no figure"
    for _, rel in SHOWN:
        assert (REPO / rel).is_file(), rel


def test_readme_shows_the_two_gifs():
    gifs = {Path(rel).name: caption for caption, rel in SHOWN if rel.endswith(".gif")}
    assert set(gifs) == {"demo_3d.gif", "demo_crops_vs_grid.gif"}
    for name, caption in gifs.items():
        path = REPO / "docs" / "images" / name
        assert path.stat().st_size < 2_000_000, name  # small enough for a README
        with Image.open(path) as im:
            assert im.format == "GIF" and im.n_frames >= 10, name
        assert "automatic centerline" in caption or "ORACLE" in caption, caption  # which prior made it
