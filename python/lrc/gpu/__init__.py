"""GPU code generation shared by the `vulkan` and `opencl` targets.

lr layers -> one `gpu.func` each (builder.py, ops_*.py; program.py plans buffers) -> SPIR-V through
MLIR (spirv.py: Shader capability for Vulkan, Kernel capability -> SPIR 1.2 bitcode for OpenCL) ->
run by vulkan_runtime.py (wgpu) or opencl_runtime.py (pyopencl).
"""
