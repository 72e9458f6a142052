"""Float64 products of float32 features, a block of rows at a time.

A sweep holds every cut's pooled features (N×D float32) anyway; what an
estimator adds must stay small beside them. A float64 copy of a cut doubles it,
``x.T @ x`` on such a copy holds both, and a k-NN distance matrix over 10,000
images is 800 MB. These helpers read :data:`ROWS` rows at a time, so an
estimator holds the features, at most a D×D matrix and one block, whatever N is.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Rows converted to float64 at a time: 2,048 × 1,280 dimensions is 20 MiB.
ROWS = 2048
#: Dimensions whose standard deviation is below this are constant: they are centred, not scaled.
CONSTANT_STD = 1e-8


def row_blocks(index: np.ndarray, rows: int = ROWS) -> Iterator[np.ndarray]:
    """``index`` in consecutive pieces of at most ``rows``."""
    for start in range(0, len(index), rows):
        yield index[start : start + rows]


def _all(x: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    return np.arange(len(x)) if index is None else np.asarray(index)


def block(x: np.ndarray, index: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Rows ``index`` of ``x`` as float64, minus ``centre``."""
    z = np.asarray(x[index], dtype=np.float64)
    return z if centre is None else z - centre


def gram(x: np.ndarray, index: np.ndarray | None = None, centre: np.ndarray | None = None) -> np.ndarray:
    """``ZᵀZ`` (D×D, float64) of ``Z`` = the rows ``index`` of ``x`` (all by default) minus ``centre``."""
    out = np.zeros((x.shape[1], x.shape[1]))
    for part in row_blocks(_all(x, index)):
        z = block(x, part, centre)
        out += z.T @ z
    return out


def product(x: np.ndarray, w: np.ndarray, index: np.ndarray | None = None,
            centre: np.ndarray | None = None) -> np.ndarray:
    """``Z @ w`` (float64) of ``Z`` = the rows ``index`` of ``x`` (all by default) minus ``centre``."""
    index = _all(x, index)
    out = np.empty((len(index), w.shape[1]))
    for start, part in zip(range(0, len(index), ROWS), row_blocks(index)):
        out[start : start + len(part)] = block(x, part, centre) @ w
    return out


def transposed_product(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``xᵀ y`` (D×K, float64) for N×K ``y``."""
    out = np.zeros((x.shape[1], y.shape[1]))
    for part in row_blocks(np.arange(len(x))):
        out += block(x, part).T @ y[part]
    return out


def moments(x: np.ndarray, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (float64) of each dimension over the rows ``index``; constant dimensions
    get a standard deviation of 1, so scaling by it leaves them centred at 0."""
    index = _all(x, index)
    total = np.zeros(x.shape[1])
    for part in row_blocks(index):
        total += block(x, part).sum(axis=0)
    mean = total / max(len(index), 1)
    squares = np.zeros(x.shape[1])
    for part in row_blocks(index):
        squares += (block(x, part, mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / max(len(index), 1))
    return mean, np.where(std > CONSTANT_STD, std, 1.0)


def scaled(a: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(a − mean) / std`` computed in place on ``a`` (which must be a copy the caller owns)."""
    a -= mean.astype(a.dtype)
    a /= std.astype(a.dtype)
    return a


def standardised(x: np.ndarray, train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """The rows ``train`` of ``x`` and of each of ``others``, standardised by the training rows' mean and
    std, without ever copying more than the outputs themselves."""
    mean, std = moments(x, train)
    dtype = np.result_type(x.dtype, np.float32)
    return [scaled(x[np.asarray(index)].astype(dtype, copy=False), mean, std) for index in (train, *others)]
