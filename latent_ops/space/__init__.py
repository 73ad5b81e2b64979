"""The latent space map: features, projections (PCA, t-SNE, UMAP), k-means, neighbours, map pictures.

- :mod:`.project`: features and :func:`project` (the public names below come from there).
- :mod:`.pca`: exact PCA. :mod:`.cluster`: seeded k-means, silhouette. :mod:`.scores`: purity, ARI.
- :mod:`.neighbors`: exact nearest neighbours. :mod:`.plot`: the map picture.
"""

from .project import (
    FEATURES,
    METHODS,
    TSNE_PCA_DIMS,
    FeatureKind,
    Method,
    Projection,
    check_latents,
    features,
    project,
)

__all__ = ["FEATURES", "METHODS", "TSNE_PCA_DIMS", "FeatureKind", "Method", "Projection", "check_latents", "features", "project"]
