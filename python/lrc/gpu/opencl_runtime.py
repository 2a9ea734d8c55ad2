"""Running a GpuProgram on an OpenCL device through pyopencl, from SPIR 1.2 bitcode.

Weights are uploaded once; a call enqueues the input writes, every layer's kernel and the output
reads on one in-order queue and waits once.
"""
from __future__ import annotations

import numpy as np

from .errors import DeviceNotFound, KernelBuildError
from .spec import GpuProgram


def _cl():
    try:
        import pyopencl as cl
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise DeviceNotFound(f"the OpenCL target needs the 'pyopencl' Python package ({e})") from None
    return cl


def _devices(cl):
    try:
        platforms = cl.get_platforms()
    except cl.Error:  # no ICD installed: the loader reports "platform not found"
        platforms = []
    devs = [d for p in platforms for d in p.get_devices()]
    # real GPUs first, then accelerators, then CPU implementations such as PoCL
    rank = {cl.device_type.GPU: 0, cl.device_type.ACCELERATOR: 1, cl.device_type.CPU: 2}
    return sorted(devs, key=lambda d: min((r for t, r in rank.items() if d.type & t), default=3))


def list_devices() -> list[str]:
    cl = _cl()
    return [f"{d.name} ({d.platform.name})" for d in _devices(cl)]


def pick_device(cl, device: str | None):
    devs = _devices(cl)
    if not devs:
        raise DeviceNotFound("no OpenCL device found (install an OpenCL driver, e.g. Debian 'pocl-opencl-icd' for "
                             "the PoCL CPU implementation)")
    if device:
        match = [d for d in devs if device.lower() in f"{d.name} {d.platform.name}".lower()]
        if not match:
            raise DeviceNotFound(f"no OpenCL device matching '{device}'; found: "
                                 + ", ".join(f"{d.name} ({d.platform.name})" for d in devs))
        devs = match
    return devs[0]


def takes_spirv(dev) -> bool:
    """Whether the device builds SPIR-V IL (OpenCL 2.1+ IL or cl_khr_il_program): NVIDIA's and
    Intel's drivers do, PoCL 3 on Debian 12 takes only SPIR 1.2 bitcode."""
    try:
        il = dev.il_version or ""
    except Exception:  # an OpenCL 1.2 device has no CL_DEVICE_IL_VERSION
        il = ""
    return "SPIR-V" in il or "cl_khr_il_program" in dev.extensions


def build_program(cl, ctx, dev, bitcode: bytes | None, names: list[str], il: bytes | None = None):
    """Build the kernels from SPIR-V IL where the device takes it, else from SPIR bitcode; a failure
    carries the driver's build log."""
    prg = None
    use_il = il is not None and takes_spirv(dev)
    if not use_il and bitcode is None:
        raise KernelBuildError(f"{dev.name} ({dev.platform.name}) takes neither SPIR-V IL nor the SPIR 1.2 bitcode "
                               f"this program carries")
    try:
        if use_il:
            prg = cl.Program(ctx, il)
            prg.build()
        else:
            prg = cl.Program(ctx, [dev], [bitcode])
            prg.build(options=["-x", "spir", "-spir-std=1.2"])
        return [cl.Kernel(prg, n) for n in names], ("SPIR-V IL" if use_il else "SPIR 1.2 bitcode")
    except cl.Error as e:
        log = ""
        if prg is not None:
            try:
                log = prg.get_build_info(dev, cl.program_build_info.LOG)
            except cl.Error:
                pass
        raise KernelBuildError(f"the OpenCL driver could not build the kernels on {dev.name} "
                               f"({dev.platform.name}):\n{e}\nbuild log:\n{log.strip() or '(empty)'}") from None


class OpenCLRuntime:
    def __init__(self, prog: GpuProgram, bitcode: bytes | None, device: str | None = None,
                 il: bytes | None = None):
        cl = self.cl = _cl()
        dev = pick_device(cl, device)
        self.device_name = f"{dev.name} ({dev.platform.name}, OpenCL)"
        self.ctx = cl.Context([dev])
        self.queue = cl.CommandQueue(self.ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
        self.prog = prog
        mf = cl.mem_flags

        def make(n, data=None):
            if data is not None:
                return cl.Buffer(self.ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.ascontiguousarray(data))
            return cl.Buffer(self.ctx, mf.READ_WRITE, max(int(n), 1) * 4)

        self.buffers = [make(b.numel, b.data) for b in prog.buffers]
        self.kernels, self.binary_kind = build_program(cl, self.ctx, dev, bitcode, [k.name for k in prog.kernels], il)
        self.ranges, self.params = [], []  # params: kernels do not keep their argument buffers alive
        for spec, kern in zip(prog.kernels, self.kernels):
            args = [self.buffers[a.buffer] if a.kind == "buf" else make(a.array.size, a.array) for a in spec.args]
            self.params.append(args)
            kern.set_args(*args)
            block, grid = spec.launch.block, spec.launch.grid
            self.ranges.append((tuple(g * b for g, b in zip(grid, block)), tuple(block)))

    def run(self, *arrays):
        cl, q = self.cl, self.queue
        nin = len(self.prog.inputs)
        for bid, x in zip(self.prog.inputs, arrays[:nin]):
            cl.enqueue_copy(q, self.buffers[bid], np.ascontiguousarray(x, np.float32), is_blocking=False)
        for kern, (gsize, lsize) in zip(self.kernels, self.ranges):
            cl.enqueue_nd_range_kernel(q, kern, gsize, lsize)
        for bid, out in zip(self.prog.outputs, arrays[nin:]):
            cl.enqueue_copy(q, out, self.buffers[bid], is_blocking=False)
        q.finish()

    def profile_layers(self, *inputs, repeats: int = 1) -> list[tuple[str, float]]:
        """Per-layer device time from OpenCL profiling events (median of `repeats`, seconds)."""
        cl, q = self.cl, self.queue
        for bid, x in zip(self.prog.inputs, inputs):
            cl.enqueue_copy(q, self.buffers[bid], np.ascontiguousarray(x, np.float32))
        times = [[] for _ in self.kernels]
        for _ in range(repeats):
            evs = [cl.enqueue_nd_range_kernel(q, k, g, b) for k, (g, b) in zip(self.kernels, self.ranges)]
            q.finish()
            for t, ev in zip(times, evs):
                t.append((ev.profile.end - ev.profile.start) * 1e-9)
        return [(spec.layer, float(np.median(t))) for spec, t in zip(self.prog.kernels, times)]
