"""Bounds on user-sized work: how much one input may make the library allocate or loop over.

Every widget-sized input that turns into an allocation or a loop (a channel range, a label, a
variation list, a grid, a clustering search, a VAE config) is checked against a bound here before
the work starts, so a hostile or mistaken value is refused in microseconds instead of after
gigabytes. The bounds are far above any legitimate use (the shipped workflows use a few percent
of them) and each refusal is one line naming the function, the input and the value.

Error messages quote user values through :func:`excerpt`, so a 60 MB string is never echoed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import LatentOpsError

MAX_INDICES = 1024
"""Indices one selection such as traverse ``channels="0-3, 7"`` may name (duplicates count)."""
MAX_LABEL_CHARS = 1024
"""Characters in one label drawn on an image grid."""
MAX_GRID_PIXELS = 2**28
"""Pixels of one grid sheet (16384 x 16384; float32 RGB, 3 GiB)."""
MAX_TILES = 4096
"""Tiles one sprite sheet may be split into (after ``limit``)."""
MAX_VARIATIONS = 1024
"""Stacked ``seed:weight`` variations in one list."""
MAX_KMEANS_WORK = 10**11
"""Estimated work of a clustering (:func:`latent_ops.space.cluster.kmeans_work`: k-means++ and one
Lloyd pass per restart and candidate ``k``, plus silhouettes): a few minutes on one CPU thread."""
MAX_STEPS = 4096
"""Values of one traversal sweep (``steps``)."""
MAX_ELEMENTS = 2**31
"""Elements of one tensor built from widget values (a traversal batch, a walk): 8 GiB of float32."""
MAX_ECHO = 120
"""Characters of a user value quoted in an error message."""


def excerpt(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to about ``limit`` characters, with the full length said when cut.

    Long strings and sequences are cut before ``repr`` runs, so quoting a huge value is cheap.
    Example: ``excerpt("x" * 10**6, 5)`` -> ``"'xxxxx'... (1000000 characters)"``.
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        head = ", ".join(excerpt(v, max(8, limit // 8)) for v in value[:8])
        return f"[{head}, ...] ({len(value)} items)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_at_most(func: str, name: str, value: int, limit: int, hint: str = "") -> None:
    """Refuse ``value > limit`` with one line naming ``func``, ``name``, the value and the bound.

    Raises:
        LatentOpsError: (a ``ValueError``) ``value`` exceeds ``limit``; ``hint`` says what to do.
    """
    if value > limit:
        raise LatentOpsError(f"{func}: {name} is {value}, at most {limit} is allowed{'; ' + hint if hint else ''}")



def check_elements(func: str, what: str, shape: Sequence[int], limit: int = MAX_ELEMENTS) -> None:
    """Refuse to build a tensor of ``shape`` with more than ``limit`` elements, before it is allocated.

    Raises:
        LatentOpsError: naming ``func``, ``what`` and the shape.
    """
    n = math.prod(int(s) for s in shape)
    if n > limit:
        raise LatentOpsError(f"{func}: {what} would have shape {tuple(int(s) for s in shape)} = {n} elements, "
                             f"at most {limit} are allowed")
