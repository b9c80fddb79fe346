"""The logic-depth analysis on small netlists whose depths are known by construction."""

import json

import pytest

from scripts.logic_depth import LogicDepthError, logic_depth, main

CLK = 1


class Netlist:
    """A Yosys-style JSON netlist built cell by cell; nets are numbered from 10."""

    def __init__(self):
        self.cells, self.ports, self.netnames, self.next = {}, {}, {}, 10

    def net(self, name=None):
        self.next += 1
        if name:
            self.netnames[name] = {"hide_name": 0, "bits": [self.next]}
        return self.next

    def cell(self, name, kind, ins, outs, **parameters):
        conns = {**ins, **outs}
        self.cells[name] = {
            "type": kind, "parameters": parameters,
            "port_directions": {**{p: "input" for p in ins}, **{p: "output" for p in outs}},
            "connections": {p: v if isinstance(v, list) else [v] for p, v in conns.items()}}

    def ff(self, name, d):
        q = self.net(name)
        self.cell(f"{name}_ff", "TRELLIS_FF", {"DI": d, "CLK": CLK}, {"Q": q})
        return q

    def lut(self, name, *ins):
        z = self.net()
        pins = dict(zip("ABCD", [*ins, "0", "0", "0"][:4], strict=True))
        self.cell(name, "LUT4", pins, {"Z": z})
        return z

    def port(self, name, direction, bit):
        self.ports[name] = {"direction": direction, "bits": [bit]}

    def json(self):
        return {"modules": {"top": {"attributes": {"top": "1"}, "ports": self.ports,
                                    "cells": self.cells, "netnames": self.netnames},
                            "other": {"attributes": {}, "ports": {}, "cells": {},
                                      "netnames": {}}}}


def deepest(n, **kwargs):
    return {p["to"]: p for p in logic_depth(n.json(), **kwargs)["deepest"]}


def test_levels_are_the_longest_chain_of_luts_between_registers():
    n = Netlist()
    a = n.ff("a", "0")
    b = n.ff("b", "0")
    x = n.lut("blk1.x", a)
    y = n.lut("blk2.y", x, b)
    z = n.lut("blk2.z", y, a)                   # a reaches z directly too: the longer way
    n.ff("c", z)
    n.ff("d", n.lut("blk3.w", b))
    result = logic_depth(n.json())
    paths = {p["to"]: p for p in result["deepest"]}
    assert paths["c"]["levels"] == 3 and paths["c"]["from"] == "a"
    assert paths["c"]["blocks"] == ["blk1", "blk2"]
    assert paths["c"]["signals"] == ["a", f"net {x}", f"net {y}", f"net {z}"]
    assert paths["d"]["levels"] == 1 and paths["d"]["from"] == "b"
    assert [p["to"] for p in result["deepest"]] == ["c", "d"]      # constants end nothing
    assert result["histogram"] == {1: 1, 3: 1}


def test_a_carry_chain_counts_once_and_a_distributed_ram_read_once():
    n = Netlist()
    a = n.ff("a", "0")
    cout = n.net()
    s1 = n.net()
    n.cell("add0", "CCU2C", {"A0": n.lut("l", a), "CIN": "0"},
           {"S0": n.net(), "S1": n.net(), "COUT": cout})
    n.cell("add1", "CCU2C", {"A0": "0", "A1": "0", "CIN": cout},
           {"S0": n.net(), "S1": s1, "COUT": n.net()})
    n.ff("sum", s1)
    do = n.net()
    n.cell("ram", "TRELLIS_DPR16X4", {"RAD": [s1, "0", "0", "0"], "WAD": a, "DI": a,
                                      "WRE": a, "WCK": CLK}, {"DO": [do, n.net()]})
    n.ff("read", do)
    paths = deepest(n)
    assert paths["sum"]["levels"] == 2          # the LUT, then the chain entered once
    assert paths["read"]["levels"] == 3
    assert paths["ram"]["levels"] == 0          # its write side ends paths


def test_only_an_unregistered_multiplier_is_logic():
    n = Netlist()
    a = n.ff("a", "0")
    regs = {k: "NONE" for k in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_PIPELINE_CLK",
                                "REG_OUTPUT_CLK")}
    p0, p1 = n.net(), n.net("registered_p")
    n.cell("comb", "MULT18X18D", {"A0": a, "B0": a}, {"P0": p0}, **regs)
    n.cell("reg", "MULT18X18D", {"A0": a, "B0": n.lut("l", a), "CLK0": CLK}, {"P0": p1},
           **{**regs, "REG_OUTPUT_CLK": "CLK0"})
    n.ff("product", p0)
    n.ff("after", n.lut("m", p1))
    paths = deepest(n)
    assert paths["product"]["levels"] == 2
    assert paths["registered_p"]["levels"] == 1     # the DSP's inputs end a path
    assert paths["after"]["levels"] == 1 and paths["after"]["from"] == "registered_p"


def test_ports_start_and_end_paths_and_registers_are_listed_once():
    n = Netlist()
    i = n.net("i")
    n.port("i", "input", i)
    o = n.lut("o", n.lut("t", i))
    n.port("o", "output", o)
    bits = [n.lut(f"w{k}", i) for k in range(4)]
    qs = [n.net() for _ in bits]
    n.netnames["wide"] = {"hide_name": 0, "bits": qs}
    for k, (d, q) in enumerate(zip(bits, qs, strict=True)):
        n.cell(f"wide_ff{k}", "TRELLIS_FF", {"DI": d, "CLK": CLK}, {"Q": q})
    result = logic_depth(n.json(), count=2)
    assert [(p["to"], p["levels"], p["from"]) for p in result["deepest"]] == [
        ("o", 2, "i"), ("wide", 1, "i")]
    assert result["histogram"] == {1: 4, 2: 1}


def test_a_combinational_loop_and_a_bad_top_are_named():
    n = Netlist()
    loop = n.net()
    n.cell("spin", "LUT4", {"A": loop}, {"Z": loop})
    n.ff("q", loop)
    with pytest.raises(LogicDepthError, match="loop through cell spin"):
        logic_depth(n.json())
    with pytest.raises(LogicDepthError, match="no module 'nope'.*'other', 'top'"):
        logic_depth(n.json(), top="nope")
    both = n.json()
    both["modules"]["other"]["attributes"]["top"] = "1"
    with pytest.raises(LogicDepthError, match="one top module"):
        logic_depth(both)


def test_cli_prints_the_paths_and_refuses_bad_input(tmp_path, capsys):
    n = Netlist()
    n.ff("b", n.lut("x.l", n.ff("a", "0")))
    path = tmp_path / "n.json"
    path.write_text(json.dumps(n.json()))
    main([str(path), "--signals"])
    out = capsys.readouterr().out
    assert "1 levels to b from a (x)" in out and "1: 1" in out
    for argv, words in (([str(tmp_path / "missing.json")], "missing.json"),
                        ([str(path), "--top", "nope"], "no module 'nope'"),
                        ([str(path), "-n", "0"], "--count must be at least 1, not 0")):
        with pytest.raises(SystemExit):
            main(argv)
        assert words in capsys.readouterr().err
