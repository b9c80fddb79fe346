"""Turn matrices into the systolic array's stream beats and results back into matrices."""

from hw.array import Dataflow

__all__ = ["ws_tile", "os_tile"]


def _pad(vec, n):
    out = [0] * n
    out[:len(vec)] = [int(v) for v in vec]
    return out


def ws_tile(cfg, a, b):
    """Beats of one weight-stationary tile: ``a`` is M x K, ``b`` is K x N (K <= rows,
    N <= cols). Returns ``(a_beats, b_beats)``; the tile's results are the M rows of
    ``a @ b`` (first N columns of each result row)."""
    m, k = a.shape
    k2, n = b.shape
    if k != k2 or not 1 <= k <= cfg.rows or not 1 <= n <= cfg.cols or m < 1:
        raise ValueError(f"WS tile needs 1 <= K <= {cfg.rows}, 1 <= N <= {cfg.cols}, M >= 1; "
                         f"got A {a.shape} and B {b.shape}")
    b_beats = [{"data": _pad(b[r], cfg.cols), "mode": Dataflow.WS, "last": int(r == k - 1)}
               for r in range(k)]
    a_beats = [{"data": _pad(a[r], cfg.rows), "mode": Dataflow.WS, "first": int(r == 0),
                "last": int(r == m - 1), "rows_m1": 0} for r in range(m)]
    return a_beats, b_beats


def os_tile(cfg, a, b):
    """Beats of one output-stationary tile: ``a`` is M x K, ``b`` is K x N (M <= rows,
    N <= cols, any K). The tile's results are the M rows of ``a @ b``."""
    m, k = a.shape
    k2, n = b.shape
    if k != k2 or not 1 <= m <= cfg.rows or not 1 <= n <= cfg.cols or k < 1:
        raise ValueError(f"OS tile needs 1 <= M <= {cfg.rows}, 1 <= N <= {cfg.cols}, K >= 1; "
                         f"got A {a.shape} and B {b.shape}")
    a_beats = [{"data": _pad(a[:, s], cfg.rows), "mode": Dataflow.OS, "first": int(s == 0),
                "last": int(s == k - 1), "rows_m1": m - 1} for s in range(k)]
    b_beats = [{"data": _pad(b[s], cfg.cols), "mode": Dataflow.OS, "last": 0}
               for s in range(k)]
    return a_beats, b_beats
