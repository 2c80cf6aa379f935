"""Split-and-merge moves (after Ueda et al., 2000; derivation, section 12), searched
around the best restart with fit(split_merge=N). EM seldom leaves a basin in which one
component covers two clusters while two others share one; a move splits one component
and merges a pair of others, and EM runs from there. The moves are ranked by their
predicted gain: a merge's change of log-likelihood is computed exactly, a split's after
a few EM steps of its two halves on the component's share of the samples (all
components at once, on em.blocked's blocks). Each round EM runs first from a batch of
moves on disjoint components, then from the N best-ranked moves one at a time; the first
start that gains is kept, and the search stops when none does.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from em import blocked, core
from em.core import Mixture

# A split-and-merge move is kept when it gains more than this per unit of sample weight.
MOVE_GAIN = 1e-3
# Each component may merge with its few nearest others (by ||mu_i - mu_j||^2 / (s_i + s_j)).
MERGE_NEIGHBOURS = 3
# EM iterations of the two halves of every component when predicting a split's gain.
SPLIT_ITERATIONS = 4


def _exp(x: np.ndarray) -> np.ndarray:
    """exp(x), in place, without subnormals (blocked.EXP_FLOOR)."""
    np.maximum(x, blocked.EXP_FLOOR[np.float64], out=x)
    return np.exp(x, out=x)


def merged_pairs(mixture: Mixture, pairs: np.ndarray) -> Mixture:
    """Each pair (P, 2) of components as one with the pair's weight, mean and variance
    (moment matching): P components, weights not normalised."""
    w, mu, var = mixture.weights, mixture.means, mixture.variances
    i, j = pairs[:, 0], pairs[:, 1]
    weight = w[i] + w[j]
    mean = (w[i, None] * mu[i] + w[j, None] * mu[j]) / weight[:, None]
    spread = [var[m] + ((mu[m] - mean) ** 2).sum(axis=1) / mixture.d for m in (i, j)]
    return Mixture(weight, mean, (w[i] * spread[0] + w[j] * spread[1]) / weight)


def move_gains(blocks: blocked.Blocks, mixture: Mixture, var_floor: float, cancel=None):
    """Predicted changes of the log-likelihood: of merging each candidate pair, and of
    splitting each component in two, with the others held fixed.

    Both are the changes of the log-likelihood (up to the pruning's exp(-50), and to
    rounding where the replaced components carry all but 1e-16 of a row's density): a
    merge's is sum_n w_n log(1 - r_ni - r_nj + pi_m N_m(x_n) / p(x_n)). A split's
    halves start 0.8 standard deviations either side of the mean along the
    component's principal axis and take SPLIT_ITERATIONS EM steps on its share
    r_nk w_n of the samples (Ueda et al.'s partial EM, all components at once); its
    gain is then sum_n w_n log(1 - r_nk + halves / p(x_n)). In float64 whatever the
    input. -> pairs (P, 2), merge changes (P,), halves (a Mixture of 2K components,
    k's at 2k and 2k+1), split gains (K,)."""
    blocks = blocks.in_float64()
    k, d = mixture.k, mixture.d
    shift = blocks.shift
    closeness = (((mixture.means[:, None] - mixture.means[None]) ** 2).sum(axis=2)
                 / (mixture.variances[:, None] + mixture.variances[None]))
    np.fill_diagonal(closeness, np.inf)
    nearest = np.argsort(closeness, axis=1, kind="stable")[:, :min(MERGE_NEIGHBOURS, k - 1)]
    pairs = np.unique(np.sort(np.stack([np.repeat(np.arange(k), nearest.shape[1]),
                                        nearest.ravel()], axis=1), axis=1), axis=0)
    pairs = pairs[mixture.weights[pairs].sum(axis=1) > 0]  # two without weight: no merge
    model = core.log_joint_model(mixture, shift, blocks.radius)
    live, may_underflow = blocks.live(model)
    merged = core.log_joint_model(merged_pairs(mixture, pairs), shift, blocks.radius)
    # a pair matters in a block where one of it, or the merged component, can
    pair_live = live[:, pairs[:, 0]] | live[:, pairs[:, 1]] | blocks.reaches(merged, model)

    def responsibilities(b, columns):
        """Responsibilities of the components `columns` (rows, C), 0 where they are not
        live (blocked.Blocks.live), and log p(x_n) (rows,)."""
        live_columns = np.flatnonzero(live[b])
        p, row_sum, log_norm = blocked.e_step_block(blocks, b, model, live_columns, may_underflow[b])
        resp = np.zeros((len(log_norm), len(columns)))
        inside = live[b, columns]
        resp[:, inside] = p[:, np.searchsorted(live_columns, columns[inside])] / row_sum[:, None]
        return resp, log_norm

    def changed_log_likelihood(sl, log_norm, replaced, added):
        """sum_n w_n log(1 - replaced_n + exp(added_n - log p(x_n))) (added: log-joints,
        (rows, C)). Where the new terms outweigh p(x_n), or the replaced ones carried
        all of it, in the log domain (no overflow, no floor on exp)."""
        kept = np.maximum(1.0 - replaced, 0.0)
        new = added - log_norm[:, None]
        rare = (new > 0.0) | (kept < 1e-300)
        change = np.log(kept + _exp(np.where(rare, 0.0, new)))
        if rare.any():
            with np.errstate(divide="ignore"):
                change[rare] = np.logaddexp(np.log(kept[rare]), new[rare])
        return blocks.w[sl] @ change

    def first_pass(b):
        """Merge changes (P,) and the moments of every component's share on block b."""
        sl = blocks.slices[b]
        resp, log_norm = responsibilities(b, np.arange(k))
        merge = np.zeros(len(pairs))
        some = np.flatnonzero(pair_live[b])  # elsewhere the move changes nothing
        added = core.log_joint(blocks.xa64[sl], merged, some) + merged.offset
        merge[some] = changed_log_likelihood(sl, log_norm, resp[:, pairs[some, 0]]
                                             + resp[:, pairs[some, 1]], added)
        y = blocks.xa64[sl]  # [y, ||y||^2, 1]
        terms = np.concatenate([(y[:, :d, None] * y[:, None, :d]).reshape(len(y), d * d),
                                y[:, :d], y[:, d + 1:]], axis=1)
        return merge, (resp * blocks.w[sl, None]).T @ terms

    core.check_cancel(cancel)
    parts = blocks.map(first_pass)
    merge = np.sum([part[0] for part in parts], axis=0)
    # each component's share: sum r w y y^T (K, D, D), sum r w y (K, D), sum r w (K,)
    moments = np.sum([part[1] for part in parts], axis=0)
    nk = np.maximum(moments[:, -1], 1e-300)
    centre = moments[:, d * d:d * d + d] / nk[:, None]
    covariance = (moments[:, :d * d].reshape(k, d, d) / nk[:, None, None]
                  - centre[:, :, None] * centre[:, None, :])
    values, vectors = np.linalg.eigh(covariance)
    axis = vectors[:, :, -1]
    # an eigenvector's sign is LAPACK's choice: fix it, so that the halves do not swap
    axis = axis * np.sign(axis[np.arange(k), np.argmax(np.abs(axis), axis=1)])[:, None]
    axis *= np.sqrt(np.maximum(values[:, -1], 0.0))[:, None]
    halves = Mixture(np.repeat(mixture.weights / 2.0, 2),
                     np.stack([mixture.means - 0.8 * axis, mixture.means + 0.8 * axis],
                              axis=1).reshape(2 * k, d),
                     np.repeat(mixture.variances, 2))

    def halves_pass(b):
        """The split gains (K,) of `halves` and their EM statistics (2K, D+2) on block b."""
        sl = blocks.slices[b]
        columns = np.flatnonzero(relevant[b])
        resp, log_norm = responsibilities(b, columns)
        first = core.log_joint(blocks.xa64[sl], model2, 2 * columns) + model2.offset
        second = core.log_joint(blocks.xa64[sl], model2, 2 * columns + 1) + model2.offset
        log_sum = np.maximum(first, second)
        log_sum += np.log1p(_exp(-np.abs(first - second)))
        gains, stats = np.zeros(k), np.zeros((2 * k, d + 2))
        gains[columns] = changed_log_likelihood(sl, log_norm, resp, log_sum)
        resp *= blocks.w[sl, None]
        share = _exp(first - log_sum)  # of the first half, within the component
        share *= resp
        y = blocks.xa64[sl]
        stats[2 * columns] = share.T @ y
        stats[2 * columns + 1] = (resp - share).T @ y
        return gains, stats

    total_weight = float(blocks.w.sum())
    for iteration in range(SPLIT_ITERATIONS + 1):
        core.check_cancel(cancel)
        model2 = core.log_joint_model(halves, shift, blocks.radius)
        reached = blocks.reaches(model2, model)
        relevant = live | reached[:, 0::2] | reached[:, 1::2]
        parts = blocks.map(halves_pass)
        gains = np.sum([part[0] for part in parts], axis=0)
        if iteration == SPLIT_ITERATIONS:
            return pairs, merge, halves, gains
        stats = np.sum([part[1] for part in parts], axis=0)
        fitted, dead = core.mixture_from_statistics(stats, total_weight, var_floor, shift)
        # a half that lost its weight (under 1e-12 of the total) keeps its place
        halves = Mixture(fitted.weights, np.where(dead[:, None], halves.means, fitted.means),
                         np.where(dead, halves.variances, fitted.variances))


def ranked_moves(pairs, merge, gains) -> np.ndarray:
    """Every move (split s, merged pair p), s not in pair p, by decreasing predicted
    gain gains[s] + merge[p] (move_gains): (M, 3) float rows (gain, s, p)."""
    score = gains[:, None] + merge[None, :]  # (K, P)
    score[pairs[:, 0], np.arange(len(pairs))] = -np.inf
    score[pairs[:, 1], np.arange(len(pairs))] = -np.inf
    order = np.argsort(-score, axis=None, kind="stable")
    order = order[np.isfinite(score.ravel()[order])]
    s, p = np.unravel_index(order, score.shape)
    return np.stack([score.ravel()[order], s, p], axis=1)


def disjoint_batch(ranked: np.ndarray, pairs: np.ndarray, size: int) -> np.ndarray:
    """The best-ranked moves predicted to gain that touch disjoint components, at most
    `size` of them: rows of `ranked`."""
    chosen, used = [], set()
    for row, (gain, s, p) in enumerate(ranked):
        if gain <= 0 or len(chosen) == size:
            break
        touched = {int(s), *pairs[int(p)].tolist()}
        if not touched & used:
            chosen.append(row)
            used |= touched
    return ranked[chosen]


def moved(mixture: Mixture, moves: np.ndarray, pairs, halves) -> Mixture:
    """The mixture after moves (rows (gain, s, p) touching disjoint components): s keeps
    one of its halves, pair p's first component becomes the merged one, its second the
    other half of s."""
    merged = merged_pairs(mixture, pairs)
    weights, means, variances = (mixture.weights.copy(), mixture.means.copy(),
                                 mixture.variances.copy())
    for s, p in moves[:, 1:].astype(int):
        (i, j), (a, b) = pairs[p], (2 * s, 2 * s + 1)
        weights[[i, s, j]] = merged.weights[p], halves.weights[a], halves.weights[b]
        means[[i, s, j]] = merged.means[p], halves.means[a], halves.means[b]
        variances[[i, s, j]] = merged.variances[p], halves.variances[a], halves.variances[b]
    return Mixture(weights / weights.sum(), means, variances)


# A round's batch holds at most K // BATCH_SHARE moves.
BATCH_SHARE = 4


def search(blocks: blocked.Blocks, run, best: core.FitResult, var_floor: float, tries: int,
           cancel=None) -> core.FitResult:
    """Split-and-merge search from a converged fit: moves ranked by their predicted gain
    (move_gains); each round EM runs (run(start) -> FitResult) first from a batch of
    them, when two or more moves on disjoint components are predicted to gain (disjoint_batch),
    then from the `tries` best-ranked moves one at a time; the first start whose fit
    gains more than MOVE_GAIN per unit weight is kept and the next round ranks again from
    it. It stops when none does. The history runs on through the kept moves."""
    history, reseeds, moves = list(best.history), list(best.reseeds), []
    trials = 0
    while True:
        pairs, merge, halves, gains = move_gains(blocks, best, var_floor, cancel)
        ranked = ranked_moves(pairs, merge, gains)
        batch = disjoint_batch(ranked, pairs, best.k // BATCH_SHARE)
        starts = ([batch] if len(batch) > 1 else []) + list(ranked[:tries, None])
        for chosen in starts:
            core.check_cancel(cancel)
            trial = run(moved(best, chosen, pairs, halves))
            trials += 1
            if trial.log_likelihood > best.log_likelihood + MOVE_GAIN * best.total_weight:
                moves.append(len(history))  # its first iteration, as for reseeds
                reseeds += [len(history) - 1 + i for i in trial.reseeds]
                history += list(trial.history[1:])
                best = replace(trial, restarts=best.restarts)
                break
        else:
            break
    return replace(best, history=np.array(history), n_iter=len(history) - 1,
                   reseeds=tuple(reseeds), moves=tuple(moves), move_trials=trials)
