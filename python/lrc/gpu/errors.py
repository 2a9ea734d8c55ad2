"""Errors shared by the GPU runtimes."""
from __future__ import annotations


class DeviceNotFound(RuntimeError):
    """No Vulkan / OpenCL device (or none matching the requested name)."""


class KernelBuildError(RuntimeError):
    """The driver refused a kernel; the message carries the driver's log."""
