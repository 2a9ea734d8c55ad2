import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(1)


def assert_matches(ref, out, what=""):
    """The project's numerics budget: max abs error <= 1e-4 * max|ref| + 1e-5."""
    ref = ref.detach().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    out = out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    assert ref.shape == out.shape, f"{what}: shape {out.shape} != reference {ref.shape}"
    err = float(np.abs(ref - out).max()) if ref.size else 0.0
    tol = 1e-4 * float(np.abs(ref).max() if ref.size else 0.0) + 1e-5
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g}"


def compile_and_check(model, *inputs, **kw):
    import lrc

    model.eval()
    cm = lrc.compile(model, inputs, **kw)
    with torch.no_grad():
        ref = model(*inputs)
    out = cm(*inputs)
    refs = ref if isinstance(ref, tuple) else (ref,)
    outs = out if isinstance(out, tuple) else (out,)
    assert len(refs) == len(outs)
    for i, (r, o) in enumerate(zip(refs, outs)):
        assert_matches(r, o, f"output #{i}")
    return cm


@pytest.fixture
def check():
    return compile_and_check
