"""The report's figures in colour space: the sampled colours of the image as a cloud in
the RGB cube with each component's 1-sigma sphere, and EM in motion, the components'
circles on the colours' two main axes at a few iterations (one figure for the PDF, one
frame per iteration for the HTML's slider). Sizes and text as in pipeline.figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle

from pipeline.figures import SMALL, WIDTH


def _sphere(ax, centre, radius, colour):
    u, v = np.mgrid[0:2 * np.pi:13j, 0:np.pi:7j]
    ax.plot_wireframe(centre[0] + radius * np.cos(u) * np.sin(v),
                      centre[1] + radius * np.sin(u) * np.sin(v),
                      centre[2] + radius * np.cos(v), color=colour, lw=0.6, alpha=0.8)


def colour_cloud(cloud: dict, model: dict):
    """The sampled distinct colours in the RGB cube, each drawn in its component's mean
    colour, and each component's 1-sigma sphere, from two viewpoints."""
    rgb = np.asarray(cloud["rgb"]) / 255.0
    labels = np.asarray(cloud["labels"])
    means = np.clip(np.asarray(model["means"]), 0, 1)
    sigma = np.sqrt(np.asarray(model["variances"]))
    fig = plt.figure(figsize=(WIDTH, 3.3), layout="constrained")
    for i, (elev, azim) in enumerate(((20, -60), (20, 30))):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        ax.scatter(*rgb.T, c=means[labels], s=3, alpha=0.5, depthshade=False, linewidths=0)
        for mu, s in zip(means, sigma):
            _sphere(ax, mu, s, "k")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.set_zlim(0, 1)
        ax.set_xlabel("R", labelpad=-8), ax.set_ylabel("G", labelpad=-8), ax.set_zlabel("B", labelpad=-8)
        ax.set_xticks([0, 0.5, 1]), ax.set_yticks([0, 0.5, 1]), ax.set_zticks([0, 0.5, 1])
        ax.tick_params(labelsize=SMALL, pad=-2)
        ax.view_init(elev=elev, azim=azim)
        ax.set_box_aspect((1, 1, 1), zoom=0.9)
    return fig


def _motion_view(cloud: dict):
    """The colours projected on their two main axes: (project, points, lower, upper)."""
    rgb = np.asarray(cloud["rgb"]) / 255.0
    centre = rgb.mean(axis=0)
    _, _, vt = np.linalg.svd(rgb - centre, full_matrices=False)

    def project(x):
        return (np.asarray(x) - centre) @ vt[:2].T

    points = project(rgb)
    return project, points, points.min(axis=0) - 0.08, points.max(axis=0) + 0.08


def _motion_panel(ax, snap: dict, view) -> None:
    """One iteration of EM in motion: the colours (grey), and each component as a circle
    of radius sigma in its mean colour."""
    project, points, lo, hi = view
    ax.scatter(*points.T, s=1, color="0.7", linewidths=0)
    means = np.asarray(snap["means"])
    for m, s in zip(means, np.sqrt(np.asarray(snap["variances"]))):
        # add_artist: the limits are set below, so no data limits to update
        ax.add_artist(Circle(project(m), s, facecolor="none", edgecolor=np.clip(m, 0, 1), lw=2))
    ax.plot(*project(means).T, marker="+", color="k", ms=5, ls="none")
    ax.set_xlim(lo[0], hi[0]), ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(f"iteration {snap['iteration']}", fontsize=SMALL, pad=2)


def _motion_curve(ax, motion: dict, picks: list, xlabel: str) -> None:
    """The log-likelihood per pixel after every iteration, the iterations `picks` in red."""
    ll = np.asarray(motion["log_likelihood_per_pixel"])
    ax.plot(np.arange(len(ll)), ll, color="C0")
    ax.plot(picks, ll[picks], "o", color="C3", ms=5)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("log L per pixel")


def motion(motion: dict, cloud: dict):
    """EM step by step: the colours projected on their two main axes (grey), each
    component as a circle of radius sigma in its mean colour, at a few iterations;
    below, the log-likelihood per pixel after every iteration."""
    view = _motion_view(cloud)
    _, _, lo, hi = view
    snaps = motion["snapshots"]
    ncols = 3
    nrows = -(-len(snaps) // ncols)
    panel_h = (WIDTH / ncols) * (hi[1] - lo[1]) / (hi[0] - lo[0])
    fig = plt.figure(figsize=(WIDTH, nrows * (panel_h + 0.25) + 1.35), layout="constrained")
    grid = fig.add_gridspec(nrows + 1, ncols, height_ratios=[panel_h + 0.25] * nrows + [1.1])
    for i, snap in enumerate(snaps):
        _motion_panel(fig.add_subplot(grid[i // ncols, i % ncols]), snap, view)
    _motion_curve(fig.add_subplot(grid[nrows, :]), motion, [s["iteration"] for s in snaps],
                  "iteration (red: the panels above)")
    return fig


def motion_frames(motion: dict, cloud: dict, width: float = WIDTH / 2) -> list:
    """motion() one iteration at a time (the HTML's iteration slider): per snapshot, a
    figure of its panel above the log-likelihood curve, the iteration marked."""
    view = _motion_view(cloud)
    _, _, lo, hi = view
    panel_h = width * (hi[1] - lo[1]) / (hi[0] - lo[0]) + 0.25
    frames = []
    for snap in motion["snapshots"]:
        fig = plt.figure(figsize=(width, panel_h + 1.6), layout="constrained")
        top, bottom = fig.subplots(2, 1, height_ratios=[panel_h, 1.4])
        _motion_panel(top, snap, view)
        _motion_curve(bottom, motion, [snap["iteration"]], "iteration (red: the panel above)")
        frames.append(fig)
    return frames
