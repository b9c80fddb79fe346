"""numpy reference of the accelerator's arithmetic."""

import numpy as np

__all__ = ["wrap", "matmul", "gemm_reference", "random_operands", "conv2d_reference"]


def wrap(x, bits):
    """Two's-complement wrap of integers to ``bits`` bits (what a ``bits``-wide register holds)."""
    x = np.asarray(x, dtype=object if bits > 62 else np.int64)
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)
    return ((x + half) & mask) - half


def matmul(a, b, acc_width):
    """``a @ b`` with exact integer products, summed modulo ``2**acc_width``."""
    a = np.asarray(a, dtype=object)
    b = np.asarray(b, dtype=object)
    return wrap(np.asarray(a.dot(b), dtype=object), acc_width).astype(np.int64)


def gemm_reference(cfg, A, B, bias=None, scales=None, post=None):
    """``post(A @ B + bias)``: the product with the accumulator's wrap-around, then bias, ReLU,
    requantization (``scales`` per column, else ``post.scale``) and saturation."""
    from sim.assembler import postprocess
    from sim.compiler import PostOp

    post = post or PostOp()
    acc = matmul(A, B, cfg.acc_width)
    scale = post.scale if scales is None else scales
    return postprocess(acc, bias, post.relu, scale, post.shift, post.out_type,
                       scales is not None, acc_width=cfg.acc_width)


def random_operands(rng, cfg, shape):
    """Uniformly random operands over the whole range of the configured input type."""
    return rng.integers(cfg.in_min, cfg.in_max, size=shape, endpoint=True, dtype=np.int64)


def conv2d_reference(x, w, stride, padding):
    """Direct convolution: a sum over kernel positions of shifted input windows."""
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    xp = np.zeros((n, h + 2 * padding, wd + 2 * padding, c), dtype=np.int64)
    xp[:, padding:padding + h, padding:padding + wd] = x
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, oh, ow, co), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("nhwc,co->nhwo", window, w[i, j].astype(np.int64))
    return out
