"""``python -m coroseg.train``: the same command as ``coroseg train`` (also what ``torchrun`` can launch).

    python -m coroseg.train --data DIR --model unet3d_crop --out runs/x [any coroseg train option]

There is one training command line, in :mod:`coroseg.cli`; this module only forwards to it, so
options, defaults, ``--help`` and error messages are the same everywhere.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from coroseg.cli import main as cli_main

    cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
