"""Files and pictures: confined input/output folders, atomic writes, PNG metadata, image grids, GIFs.

- :mod:`.files`: folders, confinement, atomic writes, PNG text chunks, image and latent files.
- :mod:`.images`: tensor ↔ Pillow, labelled grids, sprite sheets, GIFs.
- :mod:`.animation`: saving a batch as an animation in the output folder.
"""
