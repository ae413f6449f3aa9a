"""``--set KEY=VALUE`` training options: parsed from the command line, checked against the trainer's keys.

Values are JSON (``--set channels=[8,16,32]``, ``--set cldice=0.5``); a value that is not JSON
is taken as a string (``--set crop_method=dbscan``). Keys must be options of
:data:`coroseg.train.trainer.DEFAULTS`: a key that is an argument of its own
(``--model``, ``--seed``) is refused with a pointer to that option rather than reaching
:func:`coroseg.train.train` twice.
"""

from __future__ import annotations

import json

from coroseg.errors import CorosegError

#: keyword arguments of :func:`coroseg.train.train` that have options of their own
TRAIN_OPTIONS = ("data", "out", "model", "epochs", "batch_size", "attention", "patch_budget", "device", "resume",
                 "seed", "lr", "val_every", "early_stop", "progress")
#: longest --set value accepted (a JSON list of a few hundred numbers fits many times over)
MAX_VALUE_CHARS = 10_000


def parse_overrides(items: list[str], *, known=None, own_options: tuple[str, ...] = ()) -> dict:
    """``["key=json", ...]`` -> ``{key: value}``.

    Parameters
    ----------
    items : list of str
        The ``--set`` arguments.
    known : iterable of str, optional
        The accepted keys (default: :data:`coroseg.train.trainer.DEFAULTS`).
    own_options : tuple of str
        Names of the command's own keyword options (``model``, ``seed``, ...): refused with a
        pointer to ``--<name>``.
    """
    if known is None:
        from coroseg.train.trainer import DEFAULTS

        known = DEFAULTS
    known = set(known)
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CorosegError(f"--set expects KEY=VALUE, found {item!r:.60}")
        if key in own_options:
            raise CorosegError(f"--set {key}: set it with the --{key.replace('_', '-')} option")
        if key not in known:
            raise CorosegError(f"--set {key}: unknown training option; known: {', '.join(sorted(known))}")
        if len(value) > MAX_VALUE_CHARS:
            raise CorosegError(f"--set {key}: value is {len(value)} characters long; at most {MAX_VALUE_CHARS}")
        try:
            out[key] = json.loads(value)
        except RecursionError:
            raise CorosegError(f"--set {key}: value is nested too deeply") from None
        except ValueError:
            out[key] = value
    return out


__all__ = ["parse_overrides", "TRAIN_OPTIONS", "MAX_VALUE_CHARS"]
