"""The preprocessing's QC figure: pre-op, rigidly aligned post-op and their checkerboard, with masks and landmarks."""

from __future__ import annotations

import numpy as np

from ..cohort.preproc_folder import PreprocFolder
from ..core.files import atomic_path
from ..imaging import spatial
from ..io.landmarks import points_of


def qc_figure(folder: PreprocFolder, modality: str, out_png, title: str = "", landmarks: dict | None = None) -> None:
    """Pre-op image, co-registered post-op image and their checkerboard, with masks and ``landmarks``
    (name -> landmark table in the pre-op world)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre = folder.image("pre", modality)
    post = folder.image("post", modality)
    contours = {}
    for tp, name, colour in (("pre", "brain", "yellow"), ("pre", "tumor", "red"), ("post", "resection", "cyan")):
        mask = folder.mask(tp, name) if name == "brain" else folder.lesion(tp)  # the lesion folder's, when it has one
        if mask is not None:
            contours[f"{tp}_{name}"] = (mask, colour)
    points = {name: spatial.world_to_voxel(points_of(lm), pre.affine) for name, lm in sorted((landmarks or {}).items())}
    centre = np.mean(np.concatenate(list(points.values())), 0) if points else np.array(pre.shape) / 2
    c = np.clip(np.rint(centre).astype(int), 0, np.array(pre.shape) - 1)
    checker = (np.indices(pre.shape) // 16).sum(0) % 2 == 0
    panels = [("pre-op", pre.data), ("post-op, rigidly aligned", post.data), ("checkerboard", np.where(checker, pre.data, post.data))]
    fig, axes = plt.subplots(3, 3, figsize=(11, 11))
    styles = {}
    for i, name in enumerate(points):
        styles[name] = dict(marker="x" if name.startswith("post") else "o", color=plt.cm.Set1(i % 9))
    for row, axis in enumerate((2, 1, 0)):
        for col, (label, vol) in enumerate(panels):
            ax = axes[row, col]
            sl = np.take(vol, c[axis], axis=axis)
            ax.imshow(sl.T, cmap="gray", origin="lower", vmin=0, vmax=np.percentile(vol, 99.5))
            for mask, colour in contours.values():
                ms = np.take(mask, c[axis], axis=axis)
                if ms.any():
                    ax.contour(ms.T, [0.5], colors=colour, linewidths=0.8)
            for name, pts in points.items():
                other = [a for a in range(3) if a != axis]
                near = np.abs(pts[:, axis] - c[axis]) < 6
                st = styles[name]
                ax.scatter(pts[near, other[0]], pts[near, other[1]], s=40, marker=st["marker"], label=name,
                           **({"color": st["color"]} if st["marker"] == "x" else {"facecolors": "none", "edgecolors": st["color"]}))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels))
    fig.suptitle(f"{title}: {modality} (yellow brain, red tumour, cyan cavity; o pre-op, x post-op landmarks)")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=70, format="png")
    plt.close(fig)
