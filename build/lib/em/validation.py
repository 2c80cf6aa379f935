"""Input checks for em's public functions: every bad argument raises a ValueError that
names it and says what was wrong, before any work is done. NumPy only; nothing here
knows about mixtures beyond their shapes."""

from __future__ import annotations

import math
import numbers

import numpy as np


def samples(X, name: str = "X", d: int | None = None) -> np.ndarray:
    """X as a finite real (N, D) array with N, D >= 1: float32 kept, anything else as
    float64; d: the dimension a mixture expects."""
    try:
        X = np.asarray(X)
    except ValueError as error:  # e.g. ragged nested lists
        raise ValueError(f"{name} must be a numeric 2-D array: {error}") from None
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {X.dtype}")
    if np.iscomplexobj(X):
        raise ValueError(f"{name} must be real, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, D), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sample and one dimension, "
                         f"got shape {X.shape}")
    if d is not None and X.shape[1] != d:
        raise ValueError(f"{name} has {X.shape[1]} dimensions but the mixture has {d}")
    if X.dtype != np.float32:
        X = X.astype(np.float64, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or inf")
    return X


def sample_weight(w, n: int) -> np.ndarray:
    """Non-negative finite weights (n,), not all zero, as float64; None: all ones."""
    if w is None:
        return np.ones(n)
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"sample_weight must be a numeric array: {error}") from None
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},) to match X, got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or inf")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not w.sum() > 0:
        raise ValueError("sample_weight is all zero")
    return w


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def fit_arguments(X, k, w, *, tol, max_iter, n_init, var_floor, seed, block_rows,
                  accelerate, fast, split_merge, cancel):
    """em.fit's arguments checked: -> X (N, D), w (N,) float64, k as an int."""
    X = samples(X)
    if not _is_integer(k):
        raise ValueError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    w = sample_weight(w, len(X))
    if k > np.count_nonzero(w):
        raise ValueError(f"k (={k}) exceeds the number of samples with positive "
                         f"weight ({np.count_nonzero(w)})")
    if not (isinstance(tol, numbers.Real) and not isinstance(tol, bool)
            and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    for name, value in (("max_iter", max_iter), ("n_init", n_init)):
        if not _is_integer(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if block_rows is not None and (not _is_integer(block_rows) or block_rows < 1):
        raise ValueError(f"block_rows must be None or an integer >= 1, got {block_rows!r}")
    if not _is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not (isinstance(var_floor, numbers.Real) and var_floor > 0 and math.isfinite(var_floor)):
        raise ValueError(f"var_floor must be a positive number, got {var_floor!r}")
    for name, value in (("accelerate", accelerate), ("fast", fast)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if not _is_integer(split_merge) or split_merge < 0:
        raise ValueError(f"split_merge must be an integer >= 0, got {split_merge!r}")
    if cancel is not None and not callable(cancel):
        raise ValueError(f"cancel must be None or a callable, got {cancel!r}")
    return X, w, int(k)


def start(init, k: int, d: int):
    """Explicit initial parameters (an object with weights, means and variances, or a
    (weights, means, variances) tuple) checked: -> (K,), (K, D), (K,) float64 arrays."""
    try:
        pi, mu, var = ((init.weights, init.means, init.variances)
                       if hasattr(init, "variances") else init)
    except (TypeError, ValueError):
        raise ValueError("init must be 'kmeans++', 'random', a Mixture or a "
                         "(weights, means, variances) tuple") from None
    try:
        pi, mu, var = (np.asarray(a, dtype=np.float64) for a in (pi, mu, var))
    except (TypeError, ValueError) as error:
        raise ValueError(f"init parameters must be numeric arrays: {error}") from None
    if pi.shape != (k,) or mu.shape != (k, d) or var.shape != (k,):
        raise ValueError(f"init parameters must have shapes ({k},), ({k}, {d}), ({k},); "
                         f"got {pi.shape}, {mu.shape}, {var.shape}")
    if not (np.isfinite(pi).all() and np.isfinite(mu).all() and np.isfinite(var).all()):
        raise ValueError("init parameters contain NaN or inf")
    if (pi < 0).any() or not np.isclose(pi.sum(), 1.0):
        raise ValueError(f"init weights must be non-negative and sum to 1, "
                         f"got sum {pi.sum()}")
    if (var <= 0).any():
        raise ValueError("init variances must be positive")
    return pi, mu, var
