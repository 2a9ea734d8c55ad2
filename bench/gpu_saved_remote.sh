#!/bin/bash
# Run bench/gpu_saved.py on a GPU machine that has Python 3.12 + numpy but no compiler and no network.
# Prepare on the development machine (repo root):
#   .venv/bin/python bench/gpu_saved.py export .devrun/art
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl wgpu==0.32.0 cffi pycparser rendercanvas pyopencl pytools siphash24 platformdirs
#   (apt-get download libvulkan1 ocl-icd-libopencl1 into .gl/ where the machine lacks the loaders)
# then copy the repo with .devrun/, .whl/ and .gl/ there and run: bash bench/gpu_saved_remote.sh OUTDIR
set -u
OUT=${1:-/tmp/gpu_saved_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig 2>/dev/null
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# NVIDIA containers keep the Vulkan ICD and the OpenCL library in the driver's mount
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
ocl=$(ls /usr/local/nvidia/lib64/libnvidia-opencl.so* /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so* 2>/dev/null | head -1)
if [ -n "$ocl" ] && [ ! -e /etc/OpenCL/vendors/nvidia.icd ]; then
  mkdir -p /etc/OpenCL/vendors && echo "$ocl" > /etc/OpenCL/vendors/nvidia.icd
fi
python3 - <<'PY'
import wgpu
for a in wgpu.gpu.enumerate_adapters_sync():
    print("wgpu adapter:", a.info["device"], a.info["adapter_type"], a.info["backend_type"])
try:
    import pyopencl as cl
    for p in cl.get_platforms():
        for d in p.get_devices():
            print("opencl:", p.name, "|", d.name, d.version, "| il:", getattr(d, "il_version", "?"))
except Exception as e:
    print("opencl probe failed:", e)
PY
python3 bench/gpu_saved.py run .devrun/art --repeats 20 --out "$OUT/gpu_saved"
