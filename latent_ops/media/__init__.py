"""Files and pictures: confined input/output folders, atomic writes, PNG metadata, image grids, GIFs.

- :mod:`.folders`: the input/output/temp folders, confined names, ComfyUI's output counter.
- :mod:`.png`: PNG text chunks (the ``prompt`` and ``workflow`` a PNG carries), standard library only.
- :mod:`.writes`: atomic writes; counted output names taken race-free; stale temporary files removed.
- :mod:`.files`: image and latent files, with bounds checked before decoding and streaming writes
  (re-exports the public names of the three above).
- :mod:`.images`: tensor ↔ Pillow, labelled grids, sprite sheets, GIFs.
- :mod:`.animation`: saving a batch as an animation in the output folder.
"""
