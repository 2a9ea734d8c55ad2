"""lrc: compile pruned PyTorch CNNs into fast code for mobile CPUs and GPUs.

    import lrc
    cm = lrc.compile(model, (x,), target="host")
    y = cm(x)

Attributes resolve lazily so that tools which only touch IR (lr-opt) do not import torch.
"""
__all__ = ["compile", "import_model", "optimize", "load", "CompiledModel", "TARGETS", "ModelImportError",
           "UnsupportedOpError"]

_LAZY = {
    "compile": ("compiler", "compile"), "optimize": ("compiler", "optimize"), "TARGETS": ("compiler", "TARGETS"),
    "CompiledModel": ("compiled_model", "CompiledModel"), "import_model": ("importer", "import_model"),
    "ModelImportError": ("importer", "ModelImportError"), "UnsupportedOpError": ("importer", "UnsupportedOpError"),
}


def load(path, device=None):
    """Load an artifact written by `CompiledModel.save(path)`. GPU artifacts (vulkan, opencl) run on
    the device they were compiled for unless `device` (a name substring) picks another."""
    from .targets.aot import load_artifact

    return load_artifact(path, device=device)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{mod}"), attr)
    raise AttributeError(f"module 'lrc' has no attribute '{name}'")
