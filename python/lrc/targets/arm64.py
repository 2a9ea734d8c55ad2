"""The arm64 target: aarch64 with NEON, cross-compiled with clang-22 into an AOT artifact.

The kernels are lowered at vec=4 (NEON holds 4 f32 lanes in each of 32 registers), go through the
shared LLVM pipeline (llvm.py) and the shared artifact builder (aot.py), and come out as a shared
object + header + weight blob for `aarch64-linux-gnu` or, with `android_api=N`, for
`aarch64-linux-android<N>`.

Running it: on an aarch64 machine the artifact is dlopen'ed like a host one. On x86 the call goes
through the `lr-run` driver (lib/lr_run.c, cross-built once and cached) under
`qemu-aarch64 -L /usr/aarch64-linux-gnu`, with tensors exchanged through files. That is slow and
only meant for checking numerics; time arm64 code on a phone with lr-run. Android builds link
against bionic, which this host does not have, so they are built and saved but not run here.
"""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from torch_mlir import ir

from ..codegen.lower import lower_to_kernels
from ..importer import out_spec_of
from .aot import ToolchainError, build_artifact, find_tool, open_native, run_tool
from .llvm import lower_to_llvm

ARM64_VEC = 4  # NEON: 4 f32 lanes
# android_api=24: Android 7 (bionic) instead of glibc. omp_runtime (threads > 1): "libomp" (LLVM's,
# copied into the artifact; the Linux default) or "lrc" (lib/omp_team.c compiled into model.so;
# the Android default, since Android has no libomp without the NDK).
OPTIONS: dict = {"mcpu": "cortex-a76", "android_api": None, "threads": 1, "omp_runtime": None}
OMP_RUNTIMES = ("libomp", "lrc")
SYSROOT = "/usr/aarch64-linux-gnu"  # Debian's libc6-arm64-cross, also what qemu's -L needs
LIB_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "lib"))
LR_RUN_ENV = "LRC_AARCH64_LR_RUN"  # path to a prebuilt aarch64 lr-run (e.g. from the CMake build)
LIBOMP_ENV = "LRC_AARCH64_LIBOMP"  # path to an aarch64 libomp.so.5 (threads > 1)


def clang_target(android_api: int | None) -> str:
    return f"aarch64-linux-android{android_api}" if android_api else "aarch64-linux-gnu"


def cflags(mcpu: str, opt_level: int, android_api: int | None = None) -> list[str]:
    # lld: the cross binutils' ld would also do, but lld is what links Android objects too.
    # inline atomics (omp_team.c): the outlined __aarch64_* helpers live in libgcc / compiler-rt,
    # which an NDK-less Android link does not have
    flags = [f"-O{opt_level}", f"-mcpu={mcpu}", "-fPIC", "-shared", "-fuse-ld=lld", "-mno-outline-atomics"]
    if android_api:
        flags += android_link_flags(android_api)
    return flags


def _cache_dir() -> str:
    d = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lrc")
    os.makedirs(d, exist_ok=True)
    return d


def android_link_flags(api: int) -> list[str]:
    """Link an Android .so without an NDK.

    The model needs only malloc/free/memcpy/expf-style symbols, resolved by the device's bionic at
    load time; all the link needs is to record them as DT_NEEDED libc.so / libm.so, as an NDK link
    would. Empty stub libraries with those sonames do that; no crt objects are needed because the
    model has no constructors.
    """
    clang = find_tool(("clang-22",), "clang-22")
    stubs = os.path.join(_cache_dir(), f"android{api}-stubs")
    if not all(os.path.isfile(os.path.join(stubs, f"lib{n}.so")) for n in ("c", "m")):
        os.makedirs(stubs, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="lrc-stub-") as td:
            empty = os.path.join(td, "empty.c")
            open(empty, "w").close()
            for n in ("c", "m"):
                tmp = os.path.join(td, f"lib{n}.so")
                run_tool([clang, f"--target=aarch64-linux-android{api}", "-nostdlib", "-shared", "-fuse-ld=lld",
                          f"-Wl,-soname,lib{n}.so", empty, "-o", tmp], "building an Android stub library")
                os.replace(tmp, os.path.join(stubs, f"lib{n}.so"))
    return ["-nostdlib", f"-L{stubs}", "-lc"]


def _check_options(mcpu, android_api) -> None:
    if not isinstance(mcpu, str) or not mcpu or any(c.isspace() for c in mcpu):
        raise ValueError(f"arm64: mcpu must be a CPU name such as 'cortex-a76', got {mcpu!r}")
    if android_api is not None and (not isinstance(android_api, int) or android_api < 21):
        raise ValueError(f"arm64: android_api must be None (Linux/glibc) or an int >= 21 (the first 64-bit "
                         f"Android), got {android_api!r}")


def aarch64_openmp_library() -> str:
    """Path of an aarch64 libomp.so.5 for threads > 1: $LRC_AARCH64_LIBOMP, the copy `make setup`
    unpacks from Debian's arm64 package into the venv, or a multiarch / native install."""
    env = os.environ.get(LIBOMP_ENV)
    if env:
        if not os.path.isfile(env):
            raise ToolchainError(f"${LIBOMP_ENV} points at {env}, which does not exist")
        return env
    candidates = [os.path.join(sys.prefix, "lib", "lrc-aarch64", "libomp.so.5"), "/usr/lib/aarch64-linux-gnu/libomp.so.5"]
    if native():
        candidates += ["/usr/lib/llvm-22/lib/libomp.so.5", "/usr/lib/llvm-19/lib/libomp.so.5"]
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise ToolchainError("arm64 threads > 1 needs an aarch64 OpenMP runtime (libomp.so.5): run `make setup` "
                         "(it unpacks Debian's arm64 libomp5 package into .venv/lib/lrc-aarch64) or set "
                         f"${LIBOMP_ENV}; looked in {', '.join(candidates)}")


def build(lr_module: ir.Module, *, opt_level: int = 3, mcpu: str = "cortex-a76", android_api: int | None = None,
          entry: str = "forward", threads: int = 1, omp_runtime: str | None = None):
    """Cross-compile into a private artifact directory; the runner executes that artifact.

    threads > 1: the same split as on the host (scf.parallel -> OpenMP calls). With libomp the .so
    needs libomp.so.5, which is copied into the artifact and found through an $ORIGIN rpath, so the
    directory stays self-contained on the phone; with lrc's team (Android's default) the runtime is
    inside model.so."""
    from .host import check_threads

    _check_options(mcpu, android_api)
    threads = check_threads(threads)
    if omp_runtime is not None and omp_runtime not in OMP_RUNTIMES:
        raise ValueError(f"arm64: omp_runtime must be one of {OMP_RUNTIMES} or None, got {omp_runtime!r}")
    libs, omp, sources, flags = [], None, {}, cflags(mcpu, opt_level, android_api)
    if threads > 1:
        omp_runtime = omp_runtime or ("lrc" if android_api else "libomp")
        if omp_runtime == "libomp":
            if android_api:
                # an NDK ships a bionic libomp; Debian's is glibc-only and there is no NDK here
                raise NotImplementedError(f"target 'arm64' with android_api={android_api}: omp_runtime='libomp' "
                                          "needs the Android NDK's libomp, which this build cannot link; use "
                                          "omp_runtime='lrc' (the Android default)")
            omp = aarch64_openmp_library()
            libs = [omp, "-Wl,-rpath,$ORIGIN"]
        else:
            from .aot import omp_team_build

            sources, extra = omp_team_build()
            flags = flags + extra
    else:
        omp_runtime = None
    in_shapes, out_shapes = _signature(lr_module, entry)
    kernels = lower_to_kernels(lr_module, vec=ARM64_VEC, threads=threads)
    lower_to_llvm(kernels, threads=threads)
    workdir = tempfile.TemporaryDirectory(prefix="lrc-arm64-")
    options = {"mcpu": mcpu, "android_api": android_api, "opt_level": opt_level, "threads": threads,
               "omp_runtime": omp_runtime}
    build_artifact(workdir.name, kernels, target="arm64", entry=entry, input_shapes=in_shapes,
                   output_shapes=out_shapes, cflags=flags, clang_target=clang_target(android_api),
                   options=options, libs=libs, sources=sources, out_spec=out_spec_of(lr_module))
    if omp:
        shutil.copyfile(omp, os.path.join(workdir.name, "libomp.so.5"))
    meta = {"entry": entry, "inputs": in_shapes, "outputs": out_shapes, "options": options,
            "weights": "model.weights"}
    runner = _Runner(workdir.name, meta)
    # `workdir` is kept by the artifact: the directory lives as long as the CompiledModel.
    artifact = {"dir": workdir.name, "tmp": workdir, "entry": entry, "options": options,
                "so": os.path.join(workdir.name, "model.so")}
    return runner, artifact


def _signature(module: ir.Module, entry: str):
    for op in module.body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
            t = op.type
            return [tuple(x.shape) for x in t.inputs], [tuple(x.shape) for x in t.results]
    raise ValueError(f"no function @{entry} in the module")


# --- running -----------------------------------------------------------------------------------------

def native() -> bool:
    return platform.machine().lower() in ("aarch64", "arm64") and platform.system() == "Linux"


class _Runner:
    """runner(*inputs, *outputs) for an arm64 artifact directory, picked lazily at the first call so
    that compiling and saving need neither qemu nor the cross-built driver."""

    def __init__(self, path: str, meta: dict):
        self.path, self.meta = path, meta
        self._impl = None

    def __call__(self, *arrays):
        if self._impl is None:
            self._impl = _make_runner(self.path, self.meta)
        self._impl(*arrays)


def _make_runner(path: str, meta: dict):
    if meta.get("options", {}).get("android_api"):
        raise NotImplementedError(
            f"arm64 artifact {path} is built for Android (bionic) and cannot run on this host; "
            "save() it and run it on the device with an Android build of lr-run")
    if native():
        return open_native(path, meta)[0]
    return _qemu_runner(path, meta)


def open_artifact(path: str, meta: dict):
    """Runner for a loaded arm64 artifact; (runner, keepalive). Fails now, not at the first call,
    when it cannot run here."""
    return _make_runner(path, meta), None


def qemu() -> str:
    q = find_tool(("qemu-aarch64", "qemu-aarch64-static"), "qemu-user")
    if not os.path.isfile(os.path.join(SYSROOT, "lib", "ld-linux-aarch64.so.1")):
        raise ToolchainError(f"the aarch64 C library was not found under {SYSROOT}; install it with "
                             "`apt-get install libc6-arm64-cross` (`make setup` does this)")
    return q


def _qemu_runner(path: str, meta: dict):
    q = qemu()
    driver = lr_run_aarch64()
    n_in = len(meta["inputs"])

    def run(*arrays):
        with tempfile.TemporaryDirectory(prefix="lrc-qemu-") as td:
            cmd = [q, "-L", SYSROOT, driver, path]
            for i, a in enumerate(arrays[:n_in]):
                f = os.path.join(td, f"in{i}.bin")
                a.astype("<f4", copy=False).tofile(f)
                cmd += ["--input", f]
            outs = [os.path.join(td, f"out{i}.bin") for i in range(len(arrays) - n_in)]
            for f in outs:
                cmd += ["--output", f]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"arm64 model {path} failed under qemu-aarch64 (exit {proc.returncode}):\n"
                                   f"{(proc.stderr or proc.stdout)[-2000:]}")
            for f, a in zip(outs, arrays[n_in:]):
                got = np.fromfile(f, dtype="<f4")
                if got.size != a.size:
                    raise RuntimeError(f"arm64 model {path}: lr-run wrote {got.size} values to {f}, "
                                       f"expected {a.size}")
                a.reshape(-1)[:] = got

    return run


def lr_run_aarch64() -> str:
    """Path of an aarch64 `lr-run`: $LRC_AARCH64_LR_RUN, or cross-built from lib/ into a cache keyed
    by the sources, so that an edit to the runtime rebuilds it."""
    env = os.environ.get(LR_RUN_ENV)
    if env:
        if not os.path.isfile(env):
            raise ToolchainError(f"${LR_RUN_ENV} points at {env}, which does not exist")
        return env
    srcs = [os.path.join(LIB_DIR, "runtime.c"), os.path.join(LIB_DIR, "lr_run.c"),
            os.path.join(LIB_DIR, "include", "lrc", "runtime.h")]
    missing = [s for s in srcs if not os.path.isfile(s)]
    if missing:
        raise ToolchainError(f"the lrc runtime sources are not at {LIB_DIR} ({missing[0]} missing); build "
                             f"lr-run with cmake/aarch64-linux-gnu.cmake and set ${LR_RUN_ENV} to it")
    clang = find_tool(("clang-22",), "clang-22")
    flags = ["--target=aarch64-linux-gnu", "-O2", "-fuse-ld=lld", f"-I{os.path.join(LIB_DIR, 'include')}"]
    h = hashlib.sha256(" ".join(flags).encode())
    for s in srcs:
        with open(s, "rb") as f:
            h.update(f.read())
    cache = _cache_dir()
    exe = os.path.join(cache, f"lr-run-aarch64-{h.hexdigest()[:16]}")
    if os.path.isfile(exe):
        return exe
    fd, tmp = tempfile.mkstemp(prefix=".lr-run-", dir=cache)
    os.close(fd)
    try:
        run_tool([clang, *flags, srcs[0], srcs[1], "-o", tmp, "-ldl"], "cross-building lr-run for aarch64 "
                 "(needs `apt-get install gcc-aarch64-linux-gnu lld-22`)")
        os.chmod(tmp, 0o755)
        os.replace(tmp, exe)  # atomic: concurrent builders race harmlessly
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return exe


def objdump() -> str:
    """A disassembler that reads aarch64 objects (for inspecting the generated code)."""
    return find_tool(("llvm-objdump-22", "aarch64-linux-gnu-objdump", "llvm-objdump"), "llvm-22")


def disassemble(so_path: str) -> str:
    return run_tool([objdump(), "-d", so_path], "disassembling").stdout

