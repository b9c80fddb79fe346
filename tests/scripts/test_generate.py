import json

import pytest

from hw.config import PRESETS, AccelConfig
from scripts import bench_gemm, demo, generate, soak


def test_generate_writes_verilog_and_config(tmp_path):
    generate.main(["--preset", "tiny", "--cols", "3", "--name", "t2x3", "-o", str(tmp_path)])
    text = (tmp_path / "t2x3.v").read_text()
    assert "module accelerator" in text
    for port in ("s_axil_awaddr", "s_axil_rdata", "m_axi_hbm0_arvalid", "m_axi_hbm0_wstrb",
                 "irq"):
        assert port in text
    cfg = AccelConfig.from_json((tmp_path / "t2x3.json").read_text())
    assert cfg == PRESETS["tiny"].replace(cols=3, name="t2x3")
    assert json.loads((tmp_path / "t2x3.json").read_text())["cols"] == 3


@pytest.mark.parametrize("tool, argv, words", [
    (generate, ["--top", "nothing"], ["nothing", "systolic_array"]),
    (demo, ["--gemm", "4x0x4"], ["--gemm", "4x0x4"]),
    (demo, ["--timing", "DDR4"], ["DDR4", "HBM2_2000"]),
])
def test_bad_arguments_exit_2_with_one_line(tool, argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        tool.main(argv + (["-o", str(tmp_path)] if tool is generate else []))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err


@pytest.mark.parametrize("argv, words", [
    (["--gemm", "8x8"], ["8x8", "MxKxN"]),
    (["--gemm", "8x8x8:xs"], ["8x8x8:xs", ":os"]),
    (["--preset", "huge"], ["huge", "large"]),
    (["--timing", "DDR4"], ["DDR4", "HBM2_2000"]),
])
def test_bench_gemm_bad_arguments(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        bench_gemm.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "-n must be at least 1, not 0"),
    (["--corrupt", "1.5"], "--corrupt must be from 0 to 1, not 1.5"),
    (["--stall", "1"], "--stall must be from 0 to below 1, not 1.0"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
])
def test_soak_refuses_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        soak.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
