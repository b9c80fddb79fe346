import numpy as np

from hw.config import PRESETS
from sim.reference import matmul, random_operands, wrap


def test_wrap_matches_twos_complement():
    for bits in (8, 16, 32):
        for x in (0, 1, -1, 2**(bits - 1) - 1, 2**(bits - 1), -2**(bits - 1) - 1, 3 * 2**bits + 5):
            want = x % 2**bits
            want = want - 2**bits if want >= 2**(bits - 1) else want
            assert int(wrap(x, bits)) == want


def test_matmul_is_plain_sum_of_products_wrapped():
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (5, 7))
    b = rng.integers(-128, 128, (7, 3))
    got = matmul(a, b, 16)
    for i in range(5):
        for j in range(3):
            s = sum(int(a[i, k]) * int(b[k, j]) for k in range(7))
            assert int(got[i, j]) == int(wrap(s, 16))


def test_random_operands_cover_the_range():
    rng = np.random.default_rng(0)
    x = random_operands(rng, PRESETS["tiny"], (20000,))
    assert x.min() == -128 and x.max() == 127
    y = random_operands(rng, PRESETS["tiny"].replace(in_signed=False), (20000,))
    assert y.min() == 0 and y.max() == 255
