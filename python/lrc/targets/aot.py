"""Ahead-of-time artifacts: a shared object built with clang from our LLVM IR, a weight blob, metadata.

Layout of an artifact directory (the same for every CPU target; lib/runtime.c reads it):
    model.so       the compiled network; entry `_mlir_ciface_<entry>(memref descriptors...)` and
                   `lrc_set_weights(blob, nbytes)`, which must run once before the first call
    model.h        C declarations of both (see lib/include/lrc/runtime.h for the descriptor ABI)
    model.weights  the weights: a 64-byte header (magic, size, tensor count, build id), then each
                   tensor's raw little-endian bytes at a 64-byte aligned offset
    model.meta     plain text the C runtime reads: `entry NAME`, `weights FILE`, `in d0 d1 ...`, `out ...`
    model.json     the same for Python, plus the target, its options and the format version
Weights live outside the code so that the shared object stays small and a fine-tuned or re-pruned
checkpoint with the same structure is a new blob, not a new build; the build id in the blob and in
the .so makes a mismatched pair fail loudly instead of computing garbage.
The directory is written under a temporary name and renamed into place, so a reader never sees a
half-written artifact, and an existing path is never replaced unless `overwrite=True`.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import subprocess
import tempfile
import uuid

import numpy as np

FORMAT_VERSION = 2
HOST_CFLAGS = ["-O3", "-fPIC", "-shared", "-march=x86-64-v3"]  # AVX2 + FMA

# What each -march level needs from the CPU that loads the artifact; checked at load so that a
# v4 artifact on an AVX2-only machine is a clear error instead of SIGILL.
MARCH_CPU_FLAGS = {"x86-64-v3": ("avx2", "fma"),
                   "x86-64-v4": ("avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq")}


def host_march(vector_registers: int | None) -> str:
    """Host JIT tiles built for 32 vector registers assume AVX-512VL (ymm16-31); compiled for
    x86-64-v3 they still run but spill (resnet_basic AOT 25.4 vs 18.5 ms at v4, docs/kernels.md)."""
    return "x86-64-v4" if vector_registers == 32 else "x86-64-v3"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_host_cpu(path: str, march: str) -> None:
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        raise NotImplementedError(f"{path}: a host artifact holds x86-64 code; this machine is {platform.machine()}")
    flags = cpu_flags()
    missing = [f for f in MARCH_CPU_FLAGS.get(march, ()) if flags and f not in flags]
    if missing:
        raise RuntimeError(f"{path} was built for -march={march}, but this CPU lacks {', '.join(missing)}; "
                           "rebuild it here (or save with LRC_VECTOR_REGISTERS=16 for an AVX2-only artifact)")
WEIGHTS_MAGIC = b"LRCWGT01"
WEIGHTS_ALIGN = 64
MIN_EXTERNAL_BYTES = 256  # smaller constants (index tables of a few entries) stay in the code
ARTIFACT_FILES = ("model.h", "model.json", "model.meta", "model.so", "model.weights")


class ToolchainError(RuntimeError):
    pass


def find_tool(names: tuple[str, ...], package: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise ToolchainError(f"{names[0]} was not found; install it with `apt-get install {package}` "
                         "(`make setup` does this)")


_tool = find_tool  # older name, kept for callers outside this module


def run_tool(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolchainError(f"{what} failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
    return proc


_run = run_tool


# --- weights ---------------------------------------------------------------------------------------

def externalize_weights(module) -> list[tuple[str, np.ndarray]]:
    """Move large constant globals of an LLVM-dialect module out of the code, in place.

    Each such global becomes a writable, zero-initialised (so .bss, no file bytes) hidden symbol;
    the returned (symbol, array) list is what `lrc_set_weights` copies in at load time. It must not
    stay `constant`: LLVM would then be free to fold loads from an all-zero global.
    """
    from torch_mlir import ir

    out = []
    with module.context, ir.Location.unknown():
        external = ir.Attribute.parse("#llvm.linkage<external>")
        for op in module.body.operations:
            if op.operation.name != "llvm.mlir.global" or "value" not in op.attributes:
                continue
            v = op.attributes["value"]
            if not isinstance(v, ir.DenseElementsAttr) or v.is_splat:
                continue
            arr = np.array(v, copy=True)
            if arr.nbytes < MIN_EXTERNAL_BYTES:
                continue
            elem = v.type.element_type
            zero = ir.FloatAttr.get(elem, 0.0) if isinstance(elem, ir.FloatType) else ir.IntegerAttr.get(elem, 0)
            op.attributes["value"] = ir.DenseElementsAttr.get_splat(v.type, zero)
            if "constant" in op.attributes:
                del op.attributes["constant"]
            op.attributes["linkage"] = external
            # hidden: visible to the weight loader linked into the same .so, not exported from it,
            # so the kernels keep direct PC-relative addressing instead of going through the GOT
            op.attributes["visibility_"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), 1)
            out.append((ir.StringAttr(op.attributes["sym_name"]).value, arr))
    return out


def _layout(weights):
    """(symbol, offset, nbytes) per tensor and the total blob size."""
    off, rows = WEIGHTS_ALIGN, []
    for name, arr in weights:
        rows.append((name, off, arr.nbytes))
        off += -(-arr.nbytes // WEIGHTS_ALIGN) * WEIGHTS_ALIGN
    return rows, off


def write_weights(path: str, weights, build_id: int) -> None:
    rows, total = _layout(weights)
    with open(path, "wb") as f:
        f.write(struct.pack("<8sQQQ", WEIGHTS_MAGIC, total, len(rows), build_id).ljust(WEIGHTS_ALIGN, b"\0"))
        for (_, off, n), (_, arr) in zip(rows, weights):
            f.seek(off)
            f.write(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        f.truncate(total)


def _weights_loader_c(weights, build_id: int) -> str:
    """C source of `lrc_set_weights`, compiled into model.so next to the kernels."""
    rows, total = _layout(weights)
    # No libc headers: Android builds have no bionic sysroot here (the builtins become memcpy calls,
    # which every libc the .so is loaded into provides).
    lines = ["/* Generated by lrc: copies model.weights into the kernels' weight symbols. */",
             "typedef unsigned long long lrc_u64;"]
    lines += [f"extern char {name}[];" for name, _, _ in rows]
    body = [f"  {{{name}, {off}ull, {n}ull}}," for name, off, n in rows] or ["  {0, 0, 0},"]
    lines += ["static const struct { char *dst; lrc_u64 off, n; } lrc_weight_table[] = {", *body, "};",
              "__attribute__((visibility(\"default\")))",
              "int lrc_set_weights(const void *blob, lrc_u64 nbytes) {",
              "  const unsigned char *b = (const unsigned char *)blob;",
              "  lrc_u64 hdr[3];",
              f"  if (nbytes < {WEIGHTS_ALIGN} || __builtin_memcmp(b, \"{WEIGHTS_MAGIC.decode()}\", 8))",
              "    return -1;",
              "  __builtin_memcpy(hdr, b + 8, sizeof hdr);",
              f"  if (hdr[0] != {total}ull || nbytes != {total}ull || hdr[1] != {len(rows)}ull) return -2;",
              f"  if (hdr[2] != {build_id}ull) return -3;",
              f"  for (int i = 0; i < {len(rows)}; i++)",
              "    __builtin_memcpy(lrc_weight_table[i].dst, b + lrc_weight_table[i].off, lrc_weight_table[i].n);",
              "  return 0;", "}"]
    return "\n".join(lines) + "\n"


WEIGHT_ERRORS = {-1: "is not an lrc weight blob (bad magic or too short)",
                 -2: "has the wrong size or tensor count for this model",
                 -3: "belongs to a different build of this model (build id mismatch)"}


# --- building ----------------------------------------------------------------------------------------

def compile_llvm_dialect(module, out_so: str, flags: list[str] | None = None, target: str | None = None,
                         extra_sources: dict[str, str] | None = None, libs: list[str] | None = None) -> None:
    """LLVM-dialect module (+ small C sources, name -> text) -> shared object.

    The bundled LLVM (24git) prints float constants in a syntax clang-22 cannot read, so the module
    goes through Debian's mlir-translate-22 instead, which reads our MLIR text (weights travel as
    compact hex) and writes LLVM IR that clang-22 understands.
    """
    translate = find_tool(("mlir-translate-22",), "mlir-22-tools")
    clang = find_tool(("clang-22",), "clang-22")
    with tempfile.TemporaryDirectory(prefix="lrc-aot-") as td:
        mlir = os.path.join(td, "model.mlir")
        ll = os.path.join(td, "model.ll")
        with open(mlir, "w") as f:
            module.operation.print(file=f, large_elements_limit=None)
        run_tool([translate, "--mlir-to-llvmir", mlir, "-o", ll], "mlir-translate-22")
        srcs = [ll]
        for name, text in (extra_sources or {}).items():
            srcs.append(os.path.join(td, name))
            with open(srcs[-1], "w") as f:
                f.write(text)
        run_tool([clang, "-Wno-override-module"] + ([f"--target={target}"] if target else [])
                 + (flags or HOST_CFLAGS) + srcs + ["-o", out_so] + (libs or []) + ["-lm"], "clang-22")


def _header(entry: str, ins, outs) -> str:
    lines = ["/* Generated by lrc. Each argument is a pointer to a ranked memref descriptor",
             " * (lrc_memref_<rank>d_t in lrc/runtime.h). */", "#pragma once", "#include <stdint.h>",
             '#include "lrc/runtime.h"', "",
             "/* Copy the contents of model.weights into the model; call once before the first forward",
             " * call (lrc_model_open does this). Returns 0, or < 0 if the blob does not belong to this .so. */",
             "int lrc_set_weights(const void *blob, uint64_t nbytes);", ""]
    args = [f"lrc_memref_{len(s)}d_t *in{i} /* {list(s)} */" for i, s in enumerate(ins)]
    args += [f"lrc_memref_{len(s)}d_t *out{i} /* {list(s)} */" for i, s in enumerate(outs)]
    lines.append(f"void _mlir_ciface_{entry}({', '.join(args)});")
    return "\n".join(lines) + "\n"


def build_artifact(out_dir: str, llvm_module, *, target: str, entry: str, input_shapes, output_shapes,
                   weights=None, cflags: list[str] | None = None, clang_target: str | None = None,
                   options: dict | None = None, libs: list[str] | None = None,
                   sources: dict[str, str] | None = None, out_spec: str | None = None) -> None:
    """Write a complete artifact into the existing, empty directory `out_dir`.

    `sources`: more C sources (name -> text) compiled into model.so, e.g. lib/omp_team.c.

    `weights`: the result of `externalize_weights(llvm_module)` when the caller already ran it (a
    module can be externalized only once); None runs it here.
    """
    if weights is None:
        weights = externalize_weights(llvm_module)
    build_id = uuid.uuid4().int & ((1 << 63) - 1)
    compile_llvm_dialect(llvm_module, os.path.join(out_dir, "model.so"), flags=cflags, target=clang_target,
                         extra_sources={"weights_loader.c": _weights_loader_c(weights, build_id), **(sources or {})},
                         libs=libs)
    write_weights(os.path.join(out_dir, "model.weights"), weights, build_id)
    from ..runtime.arena import entry_arena_bytes

    arena = entry_arena_bytes(llvm_module, entry)
    with open(os.path.join(out_dir, "model.h"), "w") as f:
        f.write(_header(entry, input_shapes, output_shapes))
    with open(os.path.join(out_dir, "model.meta"), "w") as f:
        f.write(f"entry {entry}\nweights model.weights\n")
        if arena:  # lib/runtime.c keeps one arena per model and calls lrc_arena_<entry>
            f.write(f"arena {arena}\n")
        for s in input_shapes:
            f.write("in " + " ".join(map(str, s)) + "\n")
        for s in output_shapes:
            f.write("out " + " ".join(map(str, s)) + "\n")
    meta = {"format": FORMAT_VERSION, "target": target, "entry": entry, "options": options or {},
            "inputs": [list(s) for s in input_shapes], "outputs": [list(s) for s in output_shapes],
            "weights": "model.weights", "build_id": build_id, "arena_bytes": arena}
    if out_spec:
        meta["out_spec"] = out_spec
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(meta, f, indent=1)


def _publish(path: str, fill) -> None:
    """Run fill(tmp_dir) and rename the finished directory to `path` (atomically replacing it)."""
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".lrc-save-", dir=parent)
    try:
        fill(tmp)
        if os.path.exists(path):  # overwrite=True: swap, then drop the old one
            old = tempfile.mkdtemp(prefix=".lrc-old-", dir=parent)
            os.rename(path, os.path.join(old, "artifact"))
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def omp_team_build() -> tuple[dict[str, str], list[str]]:
    """(C sources, extra cflags) that compile lib/omp_team.c, lrc's pthread fork/join team behind
    the __kmpc_* calls of threaded code, into model.so: for builds without a libomp (Android)."""
    p = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "lib", "omp_team.c")
    if not os.path.isfile(p):
        raise ToolchainError(f"{os.path.normpath(p)} (lrc's thread team) was not found; lrc runs from its source "
                             "tree (pip install -e .)")
    with open(p) as f:
        return {"omp_team.c": f.read()}, ["-ffreestanding"]  # no libc headers: none for bionic here


def build_host_artifact(cm, out_dir: str, omp_runtime: str = "libomp") -> None:
    """Write the AOT artifact of a host (JIT) CompiledModel into the empty directory `out_dir`.

    The host keeps its LLVM-dialect module from the JIT build; weights are split off once and
    remembered, so a second build of the same model still has them. Threaded code calls __kmpc_*:
    `omp_runtime` "libomp" links LLVM's (found at load time by rpath), "lrc" compiles lrc's own
    team in (what Android builds use; bench/omp_team.py compares the two)."""
    art = cm._artifact
    if "weights" not in art:
        art["weights"] = externalize_weights(art["llvm_module"])
    march = host_march(art.get("vector_registers"))
    threads = art.get("threads", 1)
    options, libs, sources, flags = {"march": march}, [], None, HOST_CFLAGS[:-1] + [f"-march={march}"]
    if threads > 1:
        options["threads"] = threads
        if omp_runtime == "lrc":
            sources, extra = omp_team_build()
            flags += extra
        else:
            from .llvm import openmp_library

            omp = openmp_library()
            libs = [omp, f"-Wl,-rpath,{os.path.dirname(omp)}"]
    build_artifact(out_dir, art["llvm_module"], target=cm.target, entry=art["entry"],
                   input_shapes=cm.input_shapes, output_shapes=cm.output_shapes, weights=art["weights"],
                   cflags=flags, options=options, libs=libs, sources=sources, out_spec=cm.out_spec)


def save_artifact(cm, path, overwrite: bool = False) -> None:
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    art = cm._artifact
    if art.get("gpu"):
        from ..gpu import artifact as gpu_artifact

        def fill(tmp):
            gpu_artifact.write(tmp, cm, art["gpu"])
    elif art.get("dir"):  # cross targets build their artifact up front (to run it); copy it
        src = art["dir"]

        def fill(tmp):
            for name in os.listdir(src):
                shutil.copy2(os.path.join(src, name), os.path.join(tmp, name))
    else:
        def fill(tmp):
            build_host_artifact(cm, tmp)
    _publish(path, fill)


# --- loading -----------------------------------------------------------------------------------------

class _Descriptor:
    """ctypes structs matching MLIR's ranked memref descriptor, cached per rank."""

    _cache: dict = {}

    @classmethod
    def struct(cls, rank: int):
        if rank not in cls._cache:
            fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_int64)]
            if rank:
                fields += [("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
            cls._cache[rank] = type(f"Memref{rank}D", (ctypes.Structure,), {"_fields_": fields})
        return cls._cache[rank]

    @classmethod
    def of(cls, a: np.ndarray):
        d = cls.struct(a.ndim)()
        ptr = a.ctypes.data_as(ctypes.c_void_p)
        d.allocated, d.aligned, d.offset = ptr, ptr, 0
        for i in range(a.ndim):
            d.sizes[i] = a.shape[i]
            d.strides[i] = a.strides[i] // a.itemsize
        return d


def read_meta(path: str) -> dict:
    meta_path = os.path.join(path, "model.json")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"{path} is not an lrc artifact (no model.json)")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") not in (1, FORMAT_VERSION):
        raise ValueError(f"{path}: artifact format {meta.get('format')} is not supported "
                         f"(expected {FORMAT_VERSION})")
    return meta


def open_native(path: str, meta: dict):
    """dlopen an artifact built for this machine; returns (runner, library handle)."""
    # dlopen by a private name: the loader hands back an already-loaded library for a path it has
    # seen, so re-loading an artifact that was overwritten in place would run the old code.
    with tempfile.TemporaryDirectory(prefix="lrc-load-") as td:
        so = os.path.join(td, "model.so")
        shutil.copyfile(os.path.join(path, "model.so"), so)
        lib = ctypes.CDLL(so)  # stays mapped after the copy is removed
    if meta.get("weights"):
        blob = np.fromfile(os.path.join(path, meta["weights"]), dtype=np.uint8)
        lib.lrc_set_weights.restype = ctypes.c_int
        rc = lib.lrc_set_weights(blob.ctypes.data_as(ctypes.c_void_p), ctypes.c_uint64(blob.size))
        if rc:
            raise ValueError(f"{path}/{meta['weights']} {WEIGHT_ERRORS.get(rc, f'was rejected ({rc})')}")
    fn = getattr(lib, f"_mlir_ciface_{meta['entry']}")
    fn.restype = None
    from ..runtime.arena import ThreadArenas

    arenas = ThreadArenas(int(meta.get("arena_bytes") or 0))
    arena_fn = getattr(lib, f"_mlir_ciface_lrc_arena_{meta['entry']}", None) if arenas.nbytes else None

    def run(*arrays):
        descs = [_Descriptor.of(a) for a in arrays]
        if arena_fn is None:
            fn(*[ctypes.byref(d) for d in descs])
            return
        descs.append(_Descriptor.of(arenas.get()))
        arena_fn(*[ctypes.byref(d) for d in descs])

    return run, lib


def load_artifact(path, device: str | None = None):
    from ..compiled_model import CompiledModel

    path = os.path.abspath(os.fspath(path))
    meta = read_meta(path)
    target = meta["target"]
    if device is not None and target not in ("vulkan", "opencl"):
        raise ValueError(f"{path}: device= applies to GPU artifacts; this one is for target '{target}'")
    if target in ("vulkan", "opencl"):
        from ..gpu import artifact as gpu_artifact

        run, lib = gpu_artifact.load(path, meta, device)
        return CompiledModel(run, meta["inputs"], meta["outputs"], target, artifact={"dir": path},
                             stats={"loaded_from": path, "device": lib.device_name}, keepalive=lib,
                             out_spec=meta.get("out_spec"))
    if target == "host":
        check_host_cpu(path, (meta.get("options") or {}).get("march", "x86-64-v3"))
        run, lib = open_native(path, meta)
    elif target == "arm64":
        from .arm64 import open_artifact

        run, lib = open_artifact(path, meta)
    else:
        raise NotImplementedError(f"{path}: artifacts for target '{target}' cannot be loaded")
    return CompiledModel(run, meta["inputs"], meta["outputs"], target, artifact={"dir": path},
                         stats={"loaded_from": path}, keepalive=lib, out_spec=meta.get("out_spec"))
