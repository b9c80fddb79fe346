"""Tier 1: the registered multiplier, generic and mapped onto an ECP5 MULT18X18D (simulated
with a model of the block's documented register options), against a Python model of the two
register stages."""

import numpy as np
import pytest
from amaranth import *
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.multiplier import Ecp5Target, RegisteredMultiplier


class Mult18x18dModel(Elaboratable):
    """MULT18X18D as the ECP5 sysDSP documentation describes it, for the options
    :class:`RegisteredMultiplier` may set: each of the A, B and output registers present
    (``REG_*_CLK = "CLK0"``, clock-enabled by the named ``CE*``) or bypassed (``"NONE"``);
    SIGNEDA/SIGNEDB choosing how the 18-bit inputs extend into the 36-bit product."""

    def __init__(self, **params):
        self.params = params

    def elaborate(self, platform):
        prm = self.params
        assert prm["p_REG_PIPELINE_CLK"] == "NONE" and prm["p_REG_INPUTC_CLK"] == "NONE"
        assert prm["p_MULT_BYPASS"] == "DISABLED" and prm["i_CLK0"] is not None
        m = Module()

        def stage(name, value):
            if prm[f"p_REG_{name}_CLK"] == "NONE":
                return value
            assert prm[f"p_REG_{name}_CLK"] == "CLK0"
            reg = Signal(value.shape(), name=name.lower())
            with m.If(prm["i_" + prm[f"p_REG_{name}_CE"]]):
                m.d.sync += reg.eq(value)
            return reg

        def operand(port):
            bits = Cat(prm[f"i_{port}{i}"] for i in range(18))
            return Mux(prm[f"i_SIGNED{port}"], bits.as_signed(), bits.as_unsigned())

        a = stage("INPUTA", operand("A"))
        b = stage("INPUTB", operand("B"))
        product = stage("OUTPUT", (a * b)[:36])
        m.d.comb += Cat(prm[f"o_P{i}"] for i in range(36)).eq(product)
        return m


class ModelledEcp5Multiplier(RegisteredMultiplier):
    def _primitive(self, **params):
        return Mult18x18dModel(**params)


def run(dut, shape, seed, platform=None, cycles=400):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << shape.width - 1), 1 << shape.width - 1) if shape.signed else \
        (0, 1 << shape.width)
    stimulus = [(int(rng.integers(lo, hi)), int(rng.integers(lo, hi)), int(rng.random() < 0.7))
                for _ in range(cycles)]
    got = []

    async def bench(ctx):
        for a, b, en in stimulus:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            got.append(ctx.get(dut.p))
            await ctx.tick()

    sim = Simulator(Fragment.get(dut, platform))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # the reference: operand registers and product register, each loaded when en is high
    want, ra, rb, rp = [], None, None, None
    for a, b, en in stimulus:
        want.append(rp)
        if en:
            rp = None if ra is None else ra * rb
            ra, rb = a, b
    checked = [(g, w) for g, w in zip(got, want, strict=True) if w is not None]
    assert len(checked) > cycles // 2
    return checked


SHAPES = [signed(8), unsigned(8), signed(18), unsigned(18), signed(3)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_generic(shape):
    checked = run(RegisteredMultiplier(shape), shape, seed=shape.width)
    assert all(g == w for g, w in checked), [c for c in checked if c[0] != c[1]][:5]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_ecp5_mapping(shape):
    checked = run(ModelledEcp5Multiplier(shape), shape, seed=100 + shape.width,
                  platform=Ecp5Target())
    assert all(g == w for g, w in checked), [c for c in checked if c[0] != c[1]][:5]


def test_ecp5_instance_is_the_primitive():
    frag = Fragment.get(RegisteredMultiplier(signed(8)), Ecp5Target())
    dsp = frag.subfragments[0][0]
    assert isinstance(dsp, Instance) and dsp.type == "MULT18X18D"
    assert dsp.parameters["REG_INPUTA_CLK"] == dsp.parameters["REG_OUTPUT_CLK"] == "CLK0"


@pytest.mark.parametrize("width", [0, 19])
def test_operand_width_checked(width):
    with pytest.raises(ValueError, match=f"1 to 18 bits.*not {width}"):
        RegisteredMultiplier(signed(width) if width else unsigned(0))
