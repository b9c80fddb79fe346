"""The board build and host scripts' command lines: bad arguments end with one line and
status 2 before any tool runs."""

import pytest

from scripts import board, host


@pytest.mark.parametrize("argv, message", [
    (["--baud", "0"], "--baud must be from 1 to 6250000, not 0"),
    (["--mem-kib", "300"], "--mem-kib must be from 1 to 256"),
    (["--rows", "0"], "rows must be an integer from 1 to 256, not 0"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
])
def test_board_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        board.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err


@pytest.mark.parametrize("argv, message", [
    (["--port", "/dev/null", "--gemm", "3x0x2"], "--gemm must be MxKxN"),
    (["--gemm", "3x4x2"], "the following arguments are required: --port"),
])
def test_host_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        host.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err


def test_parse_gemm():
    assert host.parse_gemm("16x9x7:os")[:3] == (16, 9, 7)
    assert host.parse_gemm("2x3x4")[3].name == "WS"
