"""ComfyUI nodes for the latent space map: project, cluster, nearest neighbours, map picture.

Custom socket types: ``LATENT_OPS_PROJECTION`` carries a :class:`latent_ops.space.project.Projection`
(coordinates, method, explained variance), ``LATENT_OPS_LABELS`` a ``(N,)`` long tensor of cluster
ids. Each node makes one ``latent_ops`` call.
"""

from __future__ import annotations

from ._library import cluster, neighbors, seeds, space
from ._library import space_plot as space_map
from .comfy_adapter import interruptible

CATEGORY = "latent_ops/space"
PROJECTION = "LATENT_OPS_PROJECTION"
LABELS = "LATENT_OPS_LABELS"

_FEATURE = (list(space.FEATURES), {"default": "flat", "tooltip": "What is compared: flat = the whole latent; channel_stats = per-channel mean and std (colour/contrast, position-free); pooled = the latent average-pooled by `pool` (coarse layout)."})
_POOL = ("INT", {"default": 2, "min": 1, "max": 64, "tooltip": "Pooling factor for feature = pooled."})
_SEED = ("INT", {"default": 0, "min": 0, "max": seeds.MAX_SEED, "control_after_generate": False,  # not a generation seed: no re-roll on every queue
                 "tooltip": "Seed of the random choices (t-SNE/UMAP, k-means++ and sampling); same seed, same result."})


def _new_batch(samples: dict, tensor: object) -> dict:
    """A LATENT for a new batch built from ``samples``: keeps its keys, drops the per-item
    ``batch_index`` (it described the input batch, not this one)."""
    out = samples.copy()
    out.pop("batch_index", None)
    out["samples"] = tensor
    return out


class LatentOpsProject:
    CATEGORY = CATEGORY
    DESCRIPTION = "Project a batch of latents to 2-D/3-D with PCA (exact; axes carry explained variance), t-SNE (needs scikit-learn) or UMAP (needs umap-learn), for the latent space map."
    RETURN_TYPES = (PROJECTION, "STRING")
    RETURN_NAMES = ("projection", "summary")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "The batch to project (at least dims + 1 latents; 4 for t-SNE/UMAP)."}),
                "method": (list(space.METHODS), {"default": "pca", "tooltip": "pca: exact and fast; tsne/umap: neighbour embeddings that show clusters better but distort distances."}),
                "dims": ("INT", {"default": 2, "min": 2, "max": 3, "tooltip": "Output dimensions (the map draws the first two)."}),
                "feature": _FEATURE,
                "pool": _POOL,
                "seed": _SEED,
                "perplexity": ("FLOAT", {"default": 30.0, "min": 2.0, "max": 200.0, "step": 1.0, "tooltip": "t-SNE perplexity (capped at (N-1)/3 for small batches)."}),
            }
        }

    @interruptible
    def execute(self, samples: dict, method: str, dims: int, feature: str, pool: int, seed: int, perplexity: float) -> tuple:
        proj = space.project(samples["samples"], method, dims, feature=feature, pool=pool, seed=seed, perplexity=perplexity)
        return (proj, proj.summary())


class LatentOpsCluster:
    CATEGORY = CATEGORY
    DESCRIPTION = "Sort a batch of latents into clusters with seeded k-means (k = 0 chooses k by silhouette). Returns the cluster centroids as latents: decode them to see each cluster's average picture."
    RETURN_TYPES = ("LATENT", LABELS, "INT", "STRING")
    RETURN_NAMES = ("centroids", "labels", "k", "summary")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "The batch to cluster."}),
                "k": ("INT", {"default": 0, "min": 0, "max": 1024, "tooltip": "Number of clusters; 0 = choose between 2 and k_max by the best silhouette score."}),
                "k_max": ("INT", {"default": 10, "min": 2, "max": 1024, "tooltip": "Largest k tried when k = 0."}),
                "feature": _FEATURE,
                "pool": _POOL,
                "seed": _SEED,
                "n_init": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": "k-means restarts; the best (lowest inertia) is kept."}),
            }
        }

    @interruptible
    def execute(self, samples: dict, k: int, k_max: int, feature: str, pool: int, seed: int, n_init: int) -> tuple:
        res = cluster.cluster(samples["samples"], k or None, k_max=k_max, feature=feature, pool=pool, seed=seed, n_init=n_init)
        return (_new_batch(samples, res.centroids), res.labels, res.k, res.summary())


class LatentOpsNearest:
    CATEGORY = CATEGORY
    DESCRIPTION = "For each query latent, find the k closest latents of a reference batch (exact search). Outputs them as one batch, query-major, ready to decode, and the distances as text."
    RETURN_TYPES = ("LATENT", "STRING")
    RETURN_NAMES = ("neighbours", "distances")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "query": ("LATENT", {"tooltip": "The latents to find neighbours for."}),
                "reference": ("LATENT", {"tooltip": "The batch searched; same channels and size as the query."}),
                "k": ("INT", {"default": 4, "min": 1, "max": 1024, "tooltip": "Neighbours per query latent."}),
                "metric": (list(neighbors.METRICS), {"default": "euclidean", "tooltip": "euclidean distance, or cosine distance (1 - cosine similarity: ignores overall magnitude)."}),
                "exclude_self": ("BOOLEAN", {"default": False, "tooltip": "The query batch is the reference batch: never return a latent as its own neighbour."}),
                "feature": _FEATURE,
                "pool": _POOL,
            }
        }

    @interruptible
    def execute(self, query: dict, reference: dict, k: int, metric: str, exclude_self: bool, feature: str, pool: int) -> tuple:
        res = neighbors.nearest(query["samples"], reference["samples"], k, metric=metric, exclude_self=exclude_self, feature=feature, pool=pool)
        return (_new_batch(reference, res.latents), res.summary())


class LatentOpsMap:
    CATEGORY = CATEGORY
    DESCRIPTION = "Draw a projection as a picture: coloured dots (by cluster when labels are given, with a legend) and a non-overlapping subset of thumbnails, from decoded images or decoded on demand with a VAE (only the shown ones)."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("map",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "projection": (PROJECTION, {"tooltip": "From Latent Ops Project."}),
                "max_thumbnails": ("INT", {"default": 200, "min": 0, "max": 4096, "tooltip": "At most this many thumbnails (0 = dots only); thumbnails never overlap."}),
                "size": ("INT", {"default": 768, "min": 256, "max": 4096, "step": 64, "tooltip": "Side of the square picture in pixels."}),
                "seed": _SEED,
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "Decoded images of the same batch, used as thumbnails."}),
                "labels": (LABELS, {"tooltip": "Cluster labels (from Latent Ops Cluster) to colour the dots."}),
                "vae": ("VAE", {"tooltip": "Decode thumbnails from `samples` with this VAE (only the shown subset); instead of `images`."}),
                "samples": ("LATENT", {"tooltip": "The projected batch, decoded with `vae` for thumbnails."}),
            },
        }

    @interruptible
    def execute(self, projection: object, max_thumbnails: int, size: int, seed: int, images: object = None, labels: object = None, vae: object = None, samples: dict | None = None) -> tuple:
        latents = samples["samples"] if samples is not None else None
        return (space_map.projection_map(projection, images=images, labels=labels, vae=vae, latents=latents, max_thumbnails=max_thumbnails, size=size, seed=seed),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "LatentOpsProject": LatentOpsProject,
    "LatentOpsCluster": LatentOpsCluster,
    "LatentOpsNearest": LatentOpsNearest,
    "LatentOpsMap": LatentOpsMap,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LatentOpsProject": "Latent Ops Project (PCA / t-SNE / UMAP)",
    "LatentOpsCluster": "Latent Ops Cluster (k-means)",
    "LatentOpsNearest": "Latent Ops Nearest Neighbours",
    "LatentOpsMap": "Latent Ops Latent Space Map",
}
