"""Running a GpuProgram on a Vulkan device through wgpu (wgpu-native; naga reads our SPIR-V).

Weights and constants are uploaded once at build; a call writes the inputs, records every layer's
dispatch in one compute pass of one command buffer, copies the outputs to mappable staging
buffers in the same submission and maps them.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .errors import DeviceNotFound, KernelBuildError
from .spec import LLVMPIPE_LOOP_LIMIT, GpuProgram

_ADAPTER_PREFERENCE = {"DiscreteGPU": 0, "IntegratedGPU": 1, "VirtualGPU": 2, "CPU": 3}
_LIMITS = ("max-storage-buffer-binding-size", "max-buffer-size", "max-storage-buffers-per-shader-stage",
           "max-compute-workgroups-per-dimension")


def _wgpu():
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # silences a harmless loader warning
    try:
        import wgpu
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise DeviceNotFound(f"the Vulkan target needs the 'wgpu' Python package ({e})") from None
    return wgpu


def list_devices() -> list[str]:
    """Names of the Vulkan adapters wgpu sees (empty when none)."""
    wgpu = _wgpu()
    return [f"{a.info['device']} ({a.info['adapter_type']})" for a in _vulkan_adapters(wgpu)]


def _vulkan_adapters(wgpu):
    try:
        adapters = wgpu.gpu.enumerate_adapters_sync()
    except Exception as e:  # wgpu-native raises when no backend initialises at all
        raise DeviceNotFound(f"no Vulkan device found: wgpu could not enumerate adapters ({e})") from None
    vk = [a for a in adapters if a.info.get("backend_type") == "Vulkan"]
    return sorted(vk, key=lambda a: _ADAPTER_PREFERENCE.get(a.info.get("adapter_type"), 9))


def pick_adapter(wgpu, device: str | None):
    adapters = _vulkan_adapters(wgpu)
    if not adapters:
        raise DeviceNotFound("no Vulkan device found (install a Vulkan driver, e.g. Debian 'mesa-vulkan-drivers "
                             "libvulkan1' for the lavapipe CPU implementation)")
    if device:
        match = [a for a in adapters if device.lower() in a.info["device"].lower()]
        if not match:
            names = ", ".join(a.info["device"] for a in adapters)
            raise DeviceNotFound(f"no Vulkan device matching '{device}'; found: {names}")
        adapters = match
    return adapters[0]


class VulkanRuntime:
    def __init__(self, prog: GpuProgram, binaries: list[bytes], device: str | None = None):
        wgpu = self.wgpu = _wgpu()
        adapter = pick_adapter(wgpu, device)
        self.device_name = f"{adapter.info['device']} (Vulkan, {adapter.info['adapter_type']})"
        limits = {k: adapter.limits[k] for k in _LIMITS if k in adapter.limits}
        self.dev = adapter.request_device_sync(required_limits=limits)
        self.prog = prog
        self.kernels = prog.kernels
        if "llvmpipe" in adapter.info["device"].lower():
            for spec in prog.kernels:
                if spec.iterations > LLVMPIPE_LOOP_LIMIT:
                    raise NotImplementedError(
                        f"{spec.layer}: kernel {spec.name} runs up to {spec.iterations} loop trips per work item; "
                        f"{self.device_name} stops every shader after {LLVMPIPE_LOOP_LIMIT} (Mesa's guard against "
                        f"hangs) and would return wrong numbers. Use target='opencl' or a GPU for this model.")
        usage = wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_DST | wgpu.BufferUsage.COPY_SRC
        max_bind = limits.get("max-storage-buffer-binding-size", 1 << 27)

        def nbytes(n):
            return max(int(n), 1) * 4

        def make(n, data=None, what=""):
            if nbytes(n) > max_bind:
                raise NotImplementedError(f"{what}: {nbytes(n)} bytes exceed this device's storage buffer binding "
                                          f"limit ({max_bind} bytes)")
            if data is not None:
                return self.dev.create_buffer_with_data(data=np.ascontiguousarray(data), usage=usage)
            return self.dev.create_buffer(size=nbytes(n), usage=usage)

        self.buffers = [make(b.numel, b.data, "a tensor") for b in prog.buffers]
        self.pipelines, self.bind_groups, self.params = [], [], []
        max_args = limits.get("max-storage-buffers-per-shader-stage", 8)
        for spec, code in zip(prog.kernels, binaries):
            if len(spec.args) > max_args:
                raise NotImplementedError(f"{spec.layer}: kernel {spec.name} needs {len(spec.args)} storage buffers, "
                                          f"the device allows {max_args}")
            resources = [self.buffers[a.buffer] if a.kind == "buf" else make(a.array.size, a.array, spec.layer)
                         for a in spec.args]
            self.params.append(resources)
            entries = [{"binding": i, "visibility": wgpu.ShaderStage.COMPUTE,
                        "buffer": {"type": wgpu.BufferBindingType.storage}} for i in range(len(resources))]
            try:
                module = self.dev.create_shader_module(code=code, label=spec.name)
                bgl = self.dev.create_bind_group_layout(entries=entries)
                layout = self.dev.create_pipeline_layout(bind_group_layouts=[bgl])
                pipe = self.dev.create_compute_pipeline(layout=layout,
                                                        compute={"module": module, "entry_point": spec.name})
            except Exception as e:
                raise KernelBuildError(f"the Vulkan driver could not build kernel {spec.name} for {spec.layer} on "
                                       f"{self.device_name}:\n{e}") from None
            self.pipelines.append(pipe)
            self.bind_groups.append(self.dev.create_bind_group(
                layout=bgl, entries=[{"binding": i, "resource": {"buffer": r, "offset": 0, "size": r.size}}
                                     for i, r in enumerate(resources)]))
        self.staging = [self.dev.create_buffer(size=nbytes(prog.buffers[o].numel),
                                               usage=wgpu.BufferUsage.MAP_READ | wgpu.BufferUsage.COPY_DST)
                        for o in prog.outputs]

    def _write_inputs(self, inputs):
        for bid, x in zip(self.prog.inputs, inputs):
            self.dev.queue.write_buffer(self.buffers[bid], 0, np.ascontiguousarray(x, np.float32))

    def _dispatch(self, enc, kernels):
        cp = enc.begin_compute_pass()
        for i in kernels:
            cp.set_pipeline(self.pipelines[i])
            cp.set_bind_group(0, self.bind_groups[i])
            cp.dispatch_workgroups(*self.kernels[i].launch.grid)
        cp.end()

    def run(self, *arrays):
        """runner(*inputs, *outputs): one submission for all layers and the read-back copies."""
        nin = len(self.prog.inputs)
        inputs, outputs = arrays[:nin], arrays[nin:]
        self._write_inputs(inputs)
        enc = self.dev.create_command_encoder()
        self._dispatch(enc, range(len(self.kernels)))
        for bid, st in zip(self.prog.outputs, self.staging):
            enc.copy_buffer_to_buffer(self.buffers[bid], 0, st, 0, st.size)
        self.dev.queue.submit([enc.finish()])
        for st, out in zip(self.staging, outputs):
            st.map_sync(self.wgpu.MapMode.READ)
            try:
                out.reshape(-1)[:] = np.frombuffer(st.read_mapped(), np.float32)[:out.size]
            finally:
                st.unmap()

    def _fence(self):
        if not hasattr(self, "_fence_buf"):
            self._fence_buf = self.dev.create_buffer(size=4, usage=self.wgpu.BufferUsage.MAP_READ
                                                     | self.wgpu.BufferUsage.COPY_DST)
        return self._fence_buf

    def profile_layers(self, *inputs, repeats: int = 1) -> list[tuple[str, float]]:
        """Per-layer wall time (median of `repeats`, seconds): one submission per layer, each ending in
        a 4-byte copy of the layer's output that is mapped, i.e. waited on."""
        self._write_inputs(inputs)
        fence = self._fence()
        out = []
        for i, spec in enumerate(self.kernels):
            dst = next(self.buffers[a.buffer] for a in spec.args if a.writes)
            times = []
            for _ in range(repeats):
                enc = self.dev.create_command_encoder()
                self._dispatch(enc, [i])
                enc.copy_buffer_to_buffer(dst, 0, fence, 0, 4)
                t0 = time.perf_counter()
                self.dev.queue.submit([enc.finish()])
                fence.map_sync(self.wgpu.MapMode.READ)
                times.append(time.perf_counter() - t0)
                fence.unmap()
            out.append((spec.layer, float(np.median(times))))
        return out
