import dataclasses

import pytest

from hw.config import PRESETS, AccelConfig


def test_presets_shapes():
    assert (PRESETS["tiny"].rows, PRESETS["tiny"].cols) == (2, 2)
    assert (PRESETS["default"].rows, PRESETS["default"].cols) == (8, 8)
    assert (PRESETS["large"].rows, PRESETS["large"].cols) == (16, 16)
    assert (PRESETS["ecp5"].rows, PRESETS["ecp5"].cols) == (12, 12)
    assert PRESETS["ecp5"].post_passes == 3
    for name, cfg in PRESETS.items():
        assert cfg.name == name


def test_derived_widths():
    cfg = AccelConfig(in_width=8, port_width=256, rows=4, cols=6)
    assert cfg.product_width == 16
    assert cfg.port_bytes == 32
    assert cfg.macs == 24
    assert (cfg.in_min, cfg.in_max) == (-128, 127)
    assert (cfg.replace(in_signed=False).in_min, cfg.replace(in_signed=False).in_max) == (0, 255)


def test_json_round_trip():
    for cfg in PRESETS.values():
        assert AccelConfig.from_json(cfg.to_json()) == cfg
    cfg = PRESETS["default"].replace(interleave_bytes=256)
    assert AccelConfig.from_json(cfg.to_json()) == cfg
    assert '"interleave_bytes": 256' in cfg.to_json()


def test_interleave_granule_defaults_to_one_port_word():
    for cfg in PRESETS.values():
        assert cfg.interleave_bytes == cfg.port_bytes
        assert cfg.segment_words == 1
    cfg = AccelConfig(port_width=64)
    assert cfg.interleave_bytes == 8
    # a one-word granule follows the port width; a chosen one stays
    assert cfg.replace(port_width=512).interleave_bytes == 64
    assert cfg.replace(interleave_bytes=128).replace(port_width=512).interleave_bytes == 128
    assert AccelConfig(interleave_bytes=4096, mem_ports=2).granule_words == 128
    assert AccelConfig(interleave_bytes=64, mem_ports=4).segment_words == 2
    assert AccelConfig(interleave_bytes=4096, mem_ports=4).segment_words == 4


def test_post_lanes():
    for cfg in PRESETS.values():
        assert cfg.post_lane_count * cfg.post_passes >= cfg.cols
    assert (AccelConfig(cols=8).post_lane_count, AccelConfig(cols=8).post_passes) == (8, 1)
    cfg = AccelConfig(cols=12, post_lanes=5)
    assert (cfg.post_lane_count, cfg.post_passes) == (5, 3)
    # 0 keeps meaning one lane per column when cols changes
    assert AccelConfig(cols=8).replace(cols=12).post_lane_count == 12


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["default"].rows = 4


@pytest.mark.parametrize("changes, words", [
    ({"rows": 0}, ["rows", "0", "from 1 to 256"]),
    ({"cols": 0}, ["cols", "0"]),
    ({"rows": 0, "cols": 8}, ["rows", "0"]),
    ({"acc_width": 15}, ["acc_width", "15", "product width 16"]),
    ({"port_width": 96}, ["port_width", "96", "power of two"]),
    ({"port_width": 2048}, ["port_width", "2048"]),
    ({"in_width": 1}, ["in_width", "1"]),
    ({"rows": 2.5}, ["rows", "2.5"]),
    ({"rows": True}, ["rows", "True"]),
    ({"in_signed": 1}, ["in_signed", "1"]),
    ({"burst_len": 300}, ["burst_len", "300"]),
    ({"mem_ports": 0}, ["mem_ports", "0"]),
    ({"name": "9x"}, ["name", "9x"]),
    ({"interleave_bytes": 48}, ["interleave_bytes", "48", "power of two", "4096"]),
    ({"interleave_bytes": 16}, ["interleave_bytes", "16", "port_bytes (32)"]),
    ({"interleave_bytes": 8192}, ["interleave_bytes", "8192", "4096"]),
    ({"interleave_bytes": 64.0}, ["interleave_bytes", "64.0"]),
    ({"interleave_bytes": True}, ["interleave_bytes", "True"]),
    ({"post_lanes": 9}, ["post_lanes", "9", "from 0 to cols (8)"]),
    ({"post_lanes": -1}, ["post_lanes", "-1"]),
    ({"post_lanes": 2.0}, ["post_lanes", "2.0"]),
    ({"load_rows": 3}, ["load_rows", "3", "power of two", "dividing spad_depth (1024)"]),
    ({"load_rows": 128}, ["load_rows", "128", "from 1 to 64"]),
    ({"load_rows": 4, "spad_depth": 6}, ["load_rows", "4", "spad_depth (6)"]),
])
def test_bad_values_name_value_and_allowed(changes, words):
    with pytest.raises(ValueError) as info:
        AccelConfig(**changes)
    for word in words:
        assert word in str(info.value)
