"""Projection + clustering of 10,000 latents: latent_ops vs naive versions, measured in one run.

Each measurement runs in a fresh subprocess (so peak memory is its own): the data are made
(10 planted clusters of 1,000 latents each, seeded), the peak-RSS counter is reset
(``/proc/self/clear_refs``), the computation runs, and time plus *extra* peak RSS over the
resident set before the computation are reported.

Computations (same data, same k-means++ initial centers, Lloyd iterations until no center moves,
at most 20, tol = 0):
  ours       latent_ops: features + fit_pca (2 components) + kmeans (chunked distance expansion,
             k-means++ included in the timing)
  naive-loop numpy: thin SVD of the centred data for PCA; Lloyd with a Python loop over points
             (one distance row per point) and a loop over clusters for the means
  naive-bcast numpy: same SVD; Lloyd with the full ``(N, k, D)`` broadcast difference tensor
Then the exact silhouette of the final labels: ours (row blocks of 1,024) vs the full ``N x N``
distance matrix in numpy. Labels of all k-means versions are compared (agreement printed).

Usage: ``python benchmarks/bench_space.py [--threads 1 2] [--shapes 4x8x8 4x16x16]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

N, K, ITERS, SEED = 10_000, 10, 20, 0


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _data(shape: tuple[int, ...]):  # noqa: ANN202
    import torch

    gen = torch.Generator().manual_seed(SEED)
    centers = torch.randn(K, *shape, generator=gen) * 0.35  # overlapping clusters
    labels = torch.arange(K).repeat_interleave(N // K)
    x = centers[labels] + torch.randn(N, *shape, generator=gen)
    return x[torch.randperm(N, generator=gen)].contiguous()


def _init(x2d):  # noqa: ANN001, ANN202 - the k-means++ indices ours starts from (not timed for naive)
    import torch

    from latent_ops.space import cluster

    xc = x2d - x2d.mean(0)
    return cluster.kmeans_plus_plus(xc, K, torch.Generator().manual_seed(SEED)).numpy()


def child(case: str, shape: tuple[int, ...], threads: int) -> dict:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from latent_ops import space
    from latent_ops.space import cluster, pca

    lat = _data(shape)
    flat = lat.reshape(N, -1)
    init = _init(flat) if case.startswith("naive") else None
    xn = flat.double().numpy() if case.startswith("naive") else None
    labels_out = None
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak-RSS counter
    base = _rss_kib("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    if case == "ours":
        feats = space.features(lat, "flat")
        coords = pca.fit_pca(feats, k=2).transform(feats)
        t_pca = time.perf_counter() - t0
        fit = cluster.kmeans(feats, K, seed=SEED, n_init=1, max_iter=ITERS, tol=0.0, callback=lambda *_: None)
        labels_out = fit.labels.numpy()
    elif case in ("naive-loop", "naive-bcast"):
        mean = xn.mean(0)
        xc = xn - mean
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        coords = xc @ vt[:2].T
        t_pca = time.perf_counter() - t0
        centers = xc[init].copy()
        for _ in range(ITERS):
            if case == "naive-loop":
                lab = np.empty(N, dtype=np.int64)
                for i in range(N):
                    lab[i] = int(((centers - xc[i]) ** 2).sum(1).argmin())
            else:
                lab = ((xc[:, None, :] - centers[None, :, :]) ** 2).sum(-1).argmin(1)
            new = centers.copy()
            for j in range(K):
                members = xc[lab == j]
                if len(members):
                    new[j] = members.mean(0)
            shift = ((new - centers) ** 2).sum()
            centers = new
            if shift == 0:
                break
        labels_out = ((xc[:, None, :] - centers[None, :, :]) ** 2).sum(-1).argmin(1) if case == "naive-bcast" else np.array([((centers - xc[i]) ** 2).sum(1).argmin() for i in range(N)])
    elif case == "sil-ours":
        labels = torch.from_numpy(np.load(os.environ["BENCH_LABELS"]))
        coords = cluster.silhouette_score(flat, labels, sample_size=None)
    elif case == "sil-naive":
        labels = np.load(os.environ["BENCH_LABELS"])
        x = flat.double().numpy()
        sq = (x * x).sum(1)
        d = np.sqrt(np.maximum(sq[:, None] - 2 * x @ x.T + sq[None, :], 0))
        np.fill_diagonal(d, 0)
        onehot = np.eye(K)[labels]
        sums, counts = d @ onehot, onehot.sum(0)
        a = sums[np.arange(N), labels] / (counts[labels] - 1)
        means = sums / counts
        means[np.arange(N), labels] = np.inf
        b = means.min(1)
        coords = float(((b - a) / np.maximum(a, b)).mean())
    else:
        raise ValueError(case)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _rss_kib("VmHWM") - base
    out = {"case": case, "seconds": elapsed, "cpu_seconds": cpu, "peak_mib": peak / 1024}
    if case in ("ours", "naive-loop", "naive-bcast"):
        out["note"] = f"PCA {t_pca:.2f} s + k-means {elapsed - t_pca:.2f} s wall"
        if case == "ours":
            out["note"] += f", {fit.n_iter} Lloyd iterations"

    if isinstance(coords, float):
        out["silhouette"] = coords
    if labels_out is not None:
        path = os.environ.get("BENCH_SAVE")
        if path:
            np.save(path, np.asarray(labels_out, dtype=np.int64))
    return out


def run_child(case: str, shape: str, threads: int, env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--shape", shape, "--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
    return json.loads(res.stdout.strip().splitlines()[-1])


def _agreement(a, b) -> float:  # noqa: ANN001 - label agreement up to renaming (majority mapping)
    import numpy as np

    table = np.zeros((K, K), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    return table.max(1).sum() / len(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--shape", default="4x8x8")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shapes", nargs="+", default=["4x8x8", "4x16x16"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, tuple(int(v) for v in args.shape.split("x")), args.threads[0])))
        return
    import tempfile

    import numpy as np

    tmp = tempfile.mkdtemp()
    print(f"N = {N} latents, k = {K}, at most {ITERS} Lloyd iterations; wall and CPU time in s, extra peak RSS in MiB;")
    print("x = ratio to ours (naive / ours): > 1 means ours is faster / smaller")
    print(f"{'shape':>9} {'thr':>3} {'case':>12} {'wall':>8} {'cpu':>8} {'peak':>8} {'x wall':>7} {'x cpu':>7} {'x mem':>7}  note")
    for shape in args.shapes:
        for threads in args.threads:
            rows = {}
            for case in ("ours", "naive-bcast", "naive-loop"):
                save = os.path.join(tmp, f"{case}.npy")
                rows[case] = run_child(case, shape, threads, {"BENCH_SAVE": save})
            ours_lab = np.load(os.path.join(tmp, "ours.npy"))
            for case in ("sil-ours", "sil-naive"):
                rows[case] = run_child(case, shape, threads, {"BENCH_LABELS": os.path.join(tmp, "ours.npy")})
            for case, r in rows.items():
                base = rows["ours" if not case.startswith("sil") else "sil-ours"]
                note = r.get("note", "")
                if case.startswith("naive"):
                    note += f"; label agreement with ours {_agreement(ours_lab, np.load(os.path.join(tmp, f'{case}.npy'))):.4f}"
                if "silhouette" in r:
                    note = f"silhouette {r['silhouette']:.6f}"
                print(f"{shape:>9} {threads:>3} {case:>12} {r['seconds']:8.3f} {r['cpu_seconds']:8.3f} {r['peak_mib']:8.1f} "
                      f"{r['seconds'] / base['seconds']:7.1f} {r['cpu_seconds'] / base['cpu_seconds']:7.1f} "
                      f"{r['peak_mib'] / max(base['peak_mib'], 0.1):7.1f}  {note}", flush=True)


if __name__ == "__main__":
    main()
