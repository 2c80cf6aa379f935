"""The fast engine (fit(fast=True), the default): core's E-step and statistics run on
blocks of rows, never an (N, K) array. Samples are ordered along a Z-order curve, so a
block of consecutive rows fills a small box; in each block the components too far from
the box to weigh exp(-50) of any row's density are skipped, and the log-sum-exp shift is
a bound known before the product (no pass for the row maximum), with exp's argument
floored above the subnormals. Blocks run on a small thread pool, sized so that each
matrix product stays on one BLAS thread; the partition does not depend on the number of
threads and partial sums are added in block order, so results are bit-identical whatever
the threads. Float32 input keeps a float32 log-joint product where it is exact enough
(core.log_joint_model); every sum is float64.
"""

from __future__ import annotations

import copy
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from em import core

# Multiply-adds of a block's products, rows * K * (D + 2), stay under this: OpenBLAS then
# computes each product on one thread (the blocks run on the engine's own threads).
BLOCK_PRODUCT = 1 << 19
# A component this many nats under another over a whole block is skipped there:
# exp(-50) * 256 components < 1e-19 of a row's density.
NEGLIGIBLE = 50.0
# exp() of a number below log(smallest normal float) is subnormal, and NumPy computes it
# many times slower: log-joints are raised to this floor first. A row whose terms are all
# that small sums below TINY_SUM and is redone with its own maximum.
EXP_FLOOR = {t: float(np.log(np.finfo(t).tiny)) + 1.0 for t in (np.float64, np.float32)}
TINY_SUM = {np.float64: 1e-200, np.float32: 1e-20}

WORKERS = min(4, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=WORKERS)
    return _POOL


def rows_per_block(k: int, d: int) -> int:
    """Rows per block: as many as keep the products on one BLAS thread (fewer, larger
    blocks cost less Python), at most 4096 (small blocks fit small boxes, where more
    components are skipped)."""
    return int(np.clip((BLOCK_PRODUCT - 1) // (max(k, 1) * (d + 2)), 256, 4096))


def spatial_order(X: np.ndarray) -> np.ndarray:
    """A permutation of the rows along a Z-order (Morton) curve: (N, D) -> (N,)."""
    n, d = X.shape
    bits = max(1, min(10, 63 // d))
    lo, span = X.min(axis=0), np.ptp(X, axis=0)
    cells = ((X - lo) / np.where(span > 0, span, 1.0) * (2 ** bits - 1)).astype(np.int64)
    # every cell index with its bit b moved to bit b * d, looked up once per coordinate
    values, spread = np.arange(2 ** bits, dtype=np.uint64), np.zeros(2 ** bits, np.uint64)
    for bit in range(bits):
        spread |= ((values >> np.uint64(bit)) & np.uint64(1)) << np.uint64(bit * d)
    code = np.zeros(n, dtype=np.uint64)
    for j in range(d):
        code |= spread[cells[:, j]] << np.uint64(j)
    return np.argsort(code, kind="stable")


def box_distances(blocks: "Blocks", points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances from every point (P, D) to the nearest and to the farthest
    corner of every block's box: (B, P), (B, P)."""
    lo, hi, points = blocks.lo[:, None, :], blocks.hi[:, None, :], points[None]
    near = np.maximum(np.maximum(lo - points, points - hi), 0.0)
    far = np.maximum(np.abs(points - lo), np.abs(points - hi))
    return (near * near).sum(axis=2), (far * far).sum(axis=2)


class Blocks:
    """Samples prepared once for repeated passes: centred on `shift` (default: the
    weighted mean), augmented, reordered along a Z-order curve and cut into blocks of
    rows, each with its bounding box (lo, hi). X: (N, D), sample_weight: (N,); `order`
    maps block rows to input rows."""

    def __init__(self, X, sample_weight, k: int, dtype=np.float64, shift=None,
                 block_rows: int | None = None):
        X = np.asarray(X, dtype=np.float64)
        self.shift = (np.average(X, axis=0, weights=sample_weight) if shift is None
                      else shift)
        self.order = spatial_order(X)
        Y = X[self.order] - self.shift
        self.xa64 = core.augment(Y)  # for the sums of the M-step
        self.xa = self.xa64.astype(dtype, copy=False)  # for the log-joint product
        self.w = np.asarray(sample_weight, dtype=np.float64)[self.order]
        self.dtype = dtype
        self.radius = math.sqrt(self.xa64[:, -2].max())
        n, rows = X.shape[0], block_rows or rows_per_block(k, X.shape[1])
        self.slices = [slice(i, min(i + rows, n)) for i in range(0, n, rows)]
        self.lo = np.array([Y[sl].min(axis=0) for sl in self.slices])  # (B, D) boxes
        self.hi = np.array([Y[sl].max(axis=0) for sl in self.slices])

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Rows in block order -> rows in input order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def map(self, func):
        """[func(b) for every block b], in block order, on the pool in a few runs of
        consecutive blocks (one task per run, not per block)."""
        n = len(self.slices)
        if n == 1:
            return [func(0)]
        runs = np.array_split(np.arange(n), min(n, 2 * WORKERS))
        return [out for run in pool().map(lambda run: [func(b) for b in run], runs)
                for out in run]

    def bounds(self, model: core.LogJoint) -> tuple[np.ndarray, np.ndarray]:
        """Upper and lower bounds of every component's log-joint over every block's box,
        (B, K) each: its peak less dmin^2 / (2 s_k), less dmax^2 / (2 s_k)."""
        near, far = box_distances(self, model.means)
        return (model.peak - 0.5 * near / model.variances,
                model.peak - 0.5 * far / model.variances)

    def live(self, model: core.LogJoint) -> tuple[np.ndarray, np.ndarray]:
        """Which components can matter to some row of each block, (B, K) bool (the others'
        upper bound is NEGLIGIBLE nats under the best lower bound: responsibility 0), and
        whether some live log-joint of the block can fall below EXP_FLOOR, (B,) bool."""
        upper, lowest = self.bounds(model)
        live = upper >= lowest.max(axis=1)[:, None] - NEGLIGIBLE
        floor = EXP_FLOOR[self.dtype] + model.offset
        return live, (live & (lowest < floor)).any(axis=1)

    def reaches(self, other: core.LogJoint, model: core.LogJoint) -> np.ndarray:
        """Which components of `other` can weigh exp(-NEGLIGIBLE) of some row's density
        under `model` in each block, as in live: (B, K') bool."""
        return self.bounds(other)[0] >= self.bounds(model)[1].max(axis=1)[:, None] - NEGLIGIBLE

    def in_float64(self) -> "Blocks":
        """These blocks with a float64 log-joint (a shallow copy for float32 input)."""
        if self.dtype == np.float64:
            return self
        other = copy.copy(self)
        other.xa, other.dtype = self.xa64, np.float64
        return other


def e_step_block(blocks: Blocks, b: int, model: core.LogJoint, columns: np.ndarray,
                 may_underflow: bool):
    """core's E-step on block b over the live components `columns` (L,): the shift is the
    model's offset and exp's floor applies where some term may underflow (Blocks.live);
    rows whose terms all underflowed are redone with their own maximum.
    -> p (rows, L), row_sum (rows,), log_norm (rows,) as core.normalise."""
    xa, xa64 = blocks.xa[blocks.slices[b]], blocks.xa64[blocks.slices[b]]
    p, row_sum, log_norm = core.normalise(core.log_joint(xa, model, columns, xa64), model.offset,
                                          row_max=False,
                                          floor=EXP_FLOOR[blocks.dtype] if may_underflow else None)
    low = np.flatnonzero(row_sum < TINY_SUM[blocks.dtype])
    if len(low):
        p[low], row_sum[low], log_norm[low] = core.normalise(
            core.log_joint(xa[low], model, columns, xa64[low]), model.offset)
    return p, row_sum, log_norm


class Engine:
    """The E-step of a mixture on prepared blocks, scored as core.Dense does it: the
    total log-likelihood (summed block by block, in block order), the M-step's statistics
    and the sample explained worst (an index in block order)."""

    def __init__(self, blocks: Blocks):
        self.blocks, self.centre = blocks, blocks.shift
        self.total_weight = float(blocks.w.sum())

    def score(self, mixture: core.Mixture) -> core.Scored:
        blocks = self.blocks
        model = core.log_joint_model(mixture, blocks.shift, blocks.radius, blocks.dtype)
        live, may_underflow = blocks.live(model)

        def one_block(b):
            sl, columns = blocks.slices[b], np.flatnonzero(live[b])
            p, row_sum, log_norm = e_step_block(blocks, b, model, columns, may_underflow[b])
            worst = int(np.argmin(log_norm))
            stats = np.zeros((mixture.k, mixture.d + 2))
            stats[columns] = core.statistics(blocks.xa64[sl], blocks.w[sl], p, row_sum,
                                             model, columns)
            return float(blocks.w[sl] @ log_norm), stats, float(log_norm[worst]), sl.start + worst

        parts = blocks.map(one_block)
        return core.Scored(mixture, math.fsum(part[0] for part in parts),
                           np.sum([part[1] for part in parts], axis=0),
                           min(parts, key=lambda part: part[2])[3], model.ref)

    def sample(self, i: int) -> tuple[np.ndarray, float]:
        return self.blocks.xa64[i, :-2] + self.blocks.shift, self.blocks.w[i]
