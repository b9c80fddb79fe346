"""Tier 2: the board top (accelerator, block RAM, UART bridge) on Verilator, GEMMs through the
UART with the host code of ``scripts/host.py``."""

from hw.board import BoardTop
from hw.config import PRESETS
from sim.toolchain import build_component, run

DIVISOR, MEM_BYTES = 4, 32768


def test_board_gemm_over_uart(tmp_path):
    cfg = PRESETS["tiny"]
    build_dir = build_component(BoardTop(cfg, divisor=DIVISOR, mem_bytes=MEM_BYTES), "board")
    env = {"TB_PRESET": cfg.name, "TB_DIVISOR": str(DIVISOR), "TB_MEM_BYTES": str(MEM_BYTES),
           "TB_SEED": "1"}
    assert run(None, "sim.tb_board", top="board", build_dir=build_dir, test_dir=tmp_path,
               env=env) == (1, 0)
