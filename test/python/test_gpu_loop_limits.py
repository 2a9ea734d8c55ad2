"""GPU kernels keep every work item's loops short: large-plane reductions run in steps, each kernel
records an upper bound of its loop trips, and the Vulkan runtime refuses a kernel that Mesa's
llvmpipe would cut short (it stops a shader after 65535 loop trips and returns wrong numbers)."""
import pytest
import torch
import torch.nn as nn

import gpu_cases
import lrc
from gpu_cases import compile_and_compare
from lrc.gpu.ops_simple import NORM_CHUNK
from lrc.gpu.spec import LLVMPIPE_LOOP_LIMIT

TARGETS = gpu_cases.gpu_targets()


def _affine_norm(c):
    m = nn.InstanceNorm2d(c, affine=True)
    with torch.no_grad():
        m.weight.uniform_(0.5, 2.0)
        m.bias.uniform_(-1.0, 1.0)
    return m


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape", [(1, 2, 1, 22000), (2, 3, 70, 90), (1, 1, 45, 45)])
def test_instance_norm_large_planes(shape, target):
    # 22000: three whole-plane passes would be 66000 trips (wrong on lavapipe before the split);
    # 70x90: a ragged last chunk, two images; 45x45 = 2025: still the one-kernel path
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1.5  # an offset mean: a one-pass variance would lose digits
    cm = compile_and_compare(_affine_norm(shape[1]), (x,), target)
    names = [k.name for k in cm._runner.__self__.prog.kernels]
    hw = shape[2] * shape[3]
    assert any(n.endswith("_chunks") for n in names) == (hw > NORM_CHUNK)


@pytest.mark.parametrize("target", TARGETS)
def test_kernels_record_their_loop_trips(target):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _affine_norm(8), nn.AdaptiveAvgPool2d((2, 3)))
    x = torch.randn(1, 3, 64, 64)
    cm = compile_and_compare(model, (x,), target)
    trips = {k.name: k.iterations for k in cm._runner.__self__.prog.kernels}
    assert trips["l0_conv2d"] == 3 + 1  # one loop over the 3 input channels (taps unrolled) and its exit test
    assert trips["l1_instance_norm_chunks"] == 2 * (NORM_CHUNK + 1)
    # adaptive pool: 32 rows of 22 (or 21+1 overlapping) columns, each row loop with its exit test
    assert trips["l2_adaptive_avg_pool2d"] == 32 + 1 + 32 * (22 + 1)
    assert max(trips.values()) < LLVMPIPE_LOOP_LIMIT


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape", [(1, 2, 300, 300), (2, 3, 45, 47)])
def test_global_average_pool_over_large_planes(shape, target):
    """A global pool over a plane above NORM_CHUNK runs as chunk sums, then one sum per plane: no
    work item walks the whole plane (300x300 was refused on lavapipe before)."""
    x = torch.randn(shape) + 0.5
    cm = compile_and_compare(nn.AdaptiveAvgPool2d(1), (x,), target)
    kernels = cm._runner.__self__.prog.kernels
    assert len(kernels) == 2 and max(k.iterations for k in kernels) <= NORM_CHUNK + 1


@pytest.mark.parametrize("target", TARGETS)
def test_kernel_past_the_llvmpipe_loop_limit(target):
    """An adaptive pool to 2x2 over 520x520: 260 rows of 260 columns (+ each loop's exit test) =
    68121 trips in one work item, over the limit: right on OpenCL and real GPUs; on lavapipe a
    NotImplementedError that names the layer, never a wrong answer."""
    model, x = nn.AdaptiveAvgPool2d(2), torch.randn(1, 2, 520, 520)
    try:
        cm = compile_and_compare(model, (x,), target)
    except NotImplementedError as e:
        assert target == "vulkan" and "llvmpipe" in str(e)
        assert "lr.adaptive_avg_pool2d" in str(e) and "loop trips" in str(e)
        return
    assert cm._runner.__self__.prog.kernels[0].iterations > LLVMPIPE_LOOP_LIMIT
    if target == "vulkan":
        assert "llvmpipe" not in cm._runner.__self__.device_name


def test_run_time_loop_bounds_need_a_bound():
    from lrc.gpu.builder import GpuBuilder
    with pytest.raises(ValueError, match="needs bound="):
        GpuBuilder._trip(0, object(), None)
    assert GpuBuilder._trip(0, object(), 7) == 7
