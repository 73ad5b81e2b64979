"""Animated output files (GIF) in the confined output folder."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from . import files, images


def save_animation(frames: Tensor, filename_prefix: str, *, fps: float = 12.0, loop: bool = True,
                   scale: int = 1) -> dict[str, str]:
    """Save ``frames`` as the next ``{prefix}_{counter:05}_.gif`` in the output folder.

    The name follows ComfyUI's filename counter (subfolders allowed, confined to the output
    folder); the file is written atomically and never overwrites another (a counter another
    process took meanwhile is skipped).

    Args:
        frames: ``[N, H, W, 3]`` float IMAGE in [0, 1].
        filename_prefix: ComfyUI-style prefix, e.g. ``"latent_ops/walk"``.
        fps: frames per second (> 0).
        loop: loop forever, or play once.
        scale: integer enlargement (nearest neighbour), for tiny frames such as 32×32.

    Returns:
        ComfyUI's ``{"filename", "subfolder", "type"}`` entry for the node's ``ui``.

    Raises:
        ValueError: bad frames or fps; :class:`latent_ops.media.files.FileAccessError` for a prefix
            that escapes the output folder.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"save_animation: frames must be [N, H, W, 3], got shape {tuple(frames.shape)}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"save_animation: scale must be an integer >= 1, got {scale!r}")
    if scale > 1:
        frames = F.interpolate(frames.movedim(-1, 1), scale_factor=scale, mode="nearest").movedim(1, -1)
    for _ in range(files.MAX_COUNTER_TRIES):
        target = files.output_path(filename_prefix, "gif", width=int(frames.shape[2]), height=int(frames.shape[1]))
        try:
            images.save_gif(frames, target.path, fps=fps, loop=loop)
        except FileExistsError:  # another run took this counter meanwhile: take the next one
            continue
        return target.ui()
    raise files.FileAccessError(f"save_animation: no free output name for {filename_prefix!r:.80}")
