"""Every command-line tool that takes configuration parameters refuses a bad one with a
single line naming the parameter, the value and what is allowed, and exit status 2."""

import pytest

from scripts import board, demo, generate, host, soak, synth

TOOLS = {"generate": (generate, []), "demo": (demo, []), "soak": (soak, []),
         "synth": (synth, []), "board": (board, []), "host": (host, ["--port", "/dev/null"])}


@pytest.mark.parametrize("argv, words", [
    (["--rows", "0"], ["rows must be", "not 0"]),
    (["--port-width", "100"], ["port_width", "power of two", "100"]),
    (["--interleave-bytes", "48"], ["interleave_bytes", "power of two", "not 48"]),
    (["--spad-depth", "-4"], ["spad_depth", "-4"]),
    (["--preset", "huge"], ["huge", "tiny"]),
    (["--mem-ports", "many"], ["--mem-ports", "'many'"]),
])
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_bad_configuration_is_one_line_and_exit_2(tool, argv, words, capsys, tmp_path):
    main, extra = TOOLS[tool]
    with pytest.raises(SystemExit) as info:
        main.main(argv + extra + ["-o", str(tmp_path)] * (tool not in ("demo", "host")))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
