"""Fast paths of the non-conv kernels (ops_spatial.py): instance norm with a fused activation and its
unrolled f64 reductions, nearest resize by integer factors, bilinear x2. Each is checked against
torch, and the resize paths also bit for bit against the general table/gather kernels they replace."""
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import assert_matches, compile_and_check
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lrc
from lrc.codegen import ops_spatial

SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _kernel_count(cm_model, x):
    """Private kernel functions in the lowered module (one per layer call)."""
    from lrc.codegen.lower import lower_to_kernels
    from lrc.transforms import DEFAULT_OPT_PIPELINE

    mod = lrc.import_model(cm_model, (x,))
    lrc.optimize(mod, DEFAULT_OPT_PIPELINE)
    low = lower_to_kernels(mod)
    return sum(1 for o in low.body.operations if o.operation.name == "func.func"
               and "sym_visibility" in o.operation.attributes)


ACTS = {"relu": nn.ReLU(), "leaky": nn.LeakyReLU(0.2), "hardtanh": nn.Hardtanh(-0.5, 0.5), "sigmoid": nn.Sigmoid(),
        "tanh": nn.Tanh()}


@pytest.mark.parametrize("act", sorted(ACTS))
def test_instance_norm_fused_activation(act):
    torch.manual_seed(0)
    norm = nn.InstanceNorm2d(5, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    m = nn.Sequential(norm, ACTS[act]).eval()
    x = torch.randn(2, 5, 13, 11) * 3 + 1
    compile_and_check(m, x)
    assert _kernel_count(m, x) == 1  # the activation runs in the norm's last pass


def test_instance_norm_used_twice_keeps_its_own_kernel(check):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.n = nn.InstanceNorm2d(3, affine=True)

        def forward(self, x):
            y = self.n(x)
            return torch.relu(y) + y

    m = Two().eval()
    x = torch.randn(1, 3, 9, 7)
    check(m, x)
    assert _kernel_count(m, x) == 3


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 23), w=st.integers(1, 37), relu=st.booleans())
def test_instance_norm_shapes(n, c, h, w, relu):
    # planes below, at and between multiples of 4 vectors exercise every reduction loop and tail
    torch.manual_seed(h * 100 + w)
    if h * w == 1:
        w = 2  # a 1-pixel plane has zero variance: torch's own result is all bias
    m = nn.Sequential(nn.InstanceNorm2d(c, affine=True), *([nn.ReLU()] if relu else [])).eval()
    with torch.no_grad():
        m[0].bias.uniform_(-1, 1)
    compile_and_check(m, torch.randn(n, c, h, w) * 5 + 3)


def test_instance_norm_large_offset_plane(check):
    # f64 accumulation: a big mean over a 256x256 plane must not swamp the variance
    check(nn.InstanceNorm2d(2), torch.randn(1, 2, 256, 256) + 100.0)


@pytest.mark.parametrize("offset,spread,first", [(100.0, 0.1, 0.0), (0.0, 1.0, 1e3), (-50.0, 3.0, -1e4)])
def test_instance_norm_statistics_offsets_and_outliers(check, offset, spread, first):
    """Mean far from zero (offset), and one value far from the rest (an outlier, `first`): the
    statistics stay within torch's error. (A one-pass shifted scheme was tried: no faster, the
    second pass over a plane reads L2.)"""
    x = torch.randn(1, 3, 67, 45) * spread + offset
    if first:
        x[:, :, 0, 0] = first
    check(nn.InstanceNorm2d(3, affine=True), x)


def _same_as_general(m, x, flag):
    fast = lrc.compile(m, (x,))
    setattr(ops_spatial, flag, False)
    try:
        general = lrc.compile(m, (x,))
    finally:
        setattr(ops_spatial, flag, True)
    # Equal up to FMA contraction (lower_to_llvm lets LLVM fuse mul + add, and the two paths
    # fuse different pairs): within a few ulp.
    torch.testing.assert_close(fast(x), general(x), rtol=1e-6, atol=1e-6)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 29),
       fh=st.integers(1, 3), fw=st.integers(1, 4))
def test_upsample_nearest_integer_factor(n, c, h, w, fh, fw):
    m = nn.Upsample(scale_factor=(fh, fw), mode="nearest").eval()
    x = torch.randn(n, c, h, w)
    compile_and_check(m, x)
    _same_as_general(m, x, "_NEAREST_FAST")


def test_upsample_nearest_non_integer_sizes(check):
    check(nn.Upsample(size=(7, 20), mode="nearest"), torch.randn(2, 3, 5, 13))
    check(nn.Upsample(scale_factor=1.5, mode="nearest"), torch.randn(1, 2, 6, 10))


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 41), align=st.booleans())
def test_upsample_bilinear_x2(n, c, h, w, align):
    m = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align).eval()
    x = torch.randn(n, c, h, w)
    compile_and_check(m, x)
    _same_as_general(m, x, "_BILINEAR_FAST")


def test_bilinear_x2_span_detects_only_the_x2_pattern():
    c0, c1, lam = ops_spatial._bilinear_table(26, 13, False, None)
    assert ops_spatial._bilinear_x2_span(c0, c1, lam, 13) == (1, 12)
    c0, c1, lam = ops_spatial._bilinear_table(26, 13, True, None)  # align_corners: other weights
    assert ops_spatial._bilinear_x2_span(c0, c1, lam, 13) is None
    c0, c1, lam = ops_spatial._bilinear_table(39, 13, False, None)  # x3
    assert ops_spatial._bilinear_x2_span(c0, c1, lam, 13) is None


def test_nearest_factor_detection():
    assert ops_spatial._integer_factor(ops_spatial._nearest_table(26, 13, None), 13) == 2
    assert ops_spatial._integer_factor(ops_spatial._nearest_table(20, 13, None), 13) == 0
    assert ops_spatial._integer_factor(ops_spatial._nearest_table(13, 13, None), 13) == 1


def test_unet_decoder_block_matches_torch():
    # bilinear x2 then concat then conv, batch 2: the fast paths inside a real model
    torch.manual_seed(3)

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.norm = nn.InstanceNorm2d(4, affine=True)
            self.conv = nn.Conv2d(6, 4, 3, padding=1)

        def forward(self, x, skip):
            return torch.relu(self.norm(self.conv(torch.cat([self.up(x), skip], 1))))

    m = Dec().eval()
    x, skip = torch.randn(2, 4, 7, 9), torch.randn(2, 2, 14, 18)
    cm = lrc.compile(m, (x, skip))
    with torch.no_grad():
        assert_matches(m(x, skip), cm(x, skip), "decoder block")


def _lowered_calls(model, inputs):
    from lrc.codegen.lower import lower_to_kernels
    from lrc.transforms import DEFAULT_OPT_PIPELINE

    mod = lrc.import_model(model, inputs)
    lrc.optimize(mod, DEFAULT_OPT_PIPELINE)
    return str(lower_to_kernels(mod))


class _Cat(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 1)
        self.c = nn.Conv2d(6, 4, 1)

    def forward(self, *xs):
        return self.fn(self, *xs)


CATS = {
    # producers write straight into their slice of the result
    "two_convs": (lambda s, x: torch.relu(torch.cat([s.a(x), s.b(x)], 1)), 0),
    "three_way": (lambda s, x: torch.relu(torch.cat([s.a(x), s.b(x), torch.sigmoid(s.a(x))], 1)), 0),
    "returned": (lambda s, x: torch.cat([s.a(x), s.b(x)], 1), 1),  # not into the caller's buffer (yet)
    # the second concat of the same values copies
    "two_concats_of_one_pair": (lambda s, x: (lambda y, z: s.c(torch.cat([y, z], 1)) + s.c(torch.cat([z, y], 1)))(
        s.a(x), s.b(x)), 1),
    "slice_also_used_later": (lambda s, x: (lambda y: s.c(torch.cat([y, s.b(x)], 1)) + y)(s.a(x)), 0),
    # the inner concat is in place, the outer (returned, and holding the inner) copies
    "nested": (lambda s, x: (lambda c: torch.cat([c, torch.relu(c)], 1))(torch.cat([s.a(x), s.b(x)], 1)), 1),
    "cat_of_input": (lambda s, x: torch.cat([x, s.a(x)], 1), 1),
    "duplicate_input": (lambda s, x: (lambda y: torch.cat([y, y], 1))(s.a(x)), 1),
    "returned_slice": (lambda s, x: (lambda y: (torch.cat([y, s.b(x)], 1), y))(s.a(x)), 1),
}


@pytest.mark.parametrize("name", sorted(CATS))
@pytest.mark.parametrize("batch", [1, 2])
def test_concat_in_place(check, name, batch):
    torch.manual_seed(5)
    fn, copies = CATS[name]
    m = _Cat(fn).eval()
    x = torch.randn(batch, 3, 7, 9)
    check(m, x)
    if batch == 1 and copies is not None:  # concat kernels left (an in-place concat has none)
        ir_text = _lowered_calls(m, (x,))
        assert len(re.findall(r"func\.func private @\w+_concat\(", ir_text)) == copies, ir_text


def test_concat_in_place_with_threads(check):
    torch.manual_seed(6)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(32, 64, 3, padding=1)
            self.b = nn.Conv2d(32, 64, 3, padding=1)

        def forward(self, x):
            return torch.relu(torch.cat([self.a(x), self.b(x)], 1))

    check(M().eval(), torch.randn(1, 32, 20, 20), threads=2)


def _guarded_array(shape, side="end"):
    """A float32 array that ends exactly where an inaccessible page starts (side="end"), or starts
    exactly where one ends (side="start"), so a kernel that reads past its input, or before it, faults
    instead of silently reading a neighbour's memory."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    nbytes = int(np.prod(shape)) * 4
    pages = -(-nbytes // mmap.PAGESIZE)
    base = libc.mmap(None, (pages + 1) * mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value)
    if side == "end":
        assert libc.mprotect(base + pages * mmap.PAGESIZE, mmap.PAGESIZE, 0) == 0  # PROT_NONE
        start = base + pages * mmap.PAGESIZE - nbytes
    else:
        assert libc.mprotect(base, mmap.PAGESIZE, 0) == 0
        start = base + mmap.PAGESIZE
    buf = (ctypes.c_float * (nbytes // 4)).from_address(start)
    return np.frombuffer(buf, np.float32).reshape(shape)


@pytest.mark.parametrize("pool,hw", [
    (nn.MaxPool2d(2), (16, 32)),                     # 2x2 / 2, whole vectors: no masked load
    (nn.MaxPool2d(2), (9, 38)),                      # odd height, a partial last vector
    (nn.MaxPool2d(3, stride=2), (17, 33)),           # 3x3 / 2: the last full vector would read one past the row
    (nn.MaxPool2d(3, stride=2), (11, 21)),           # ... and a partial one
    (nn.MaxPool2d(3, stride=1, dilation=2), (12, 29)),
    (nn.AvgPool2d(2), (10, 46)),
    (nn.AvgPool2d(3, stride=2), (13, 35)),
])
def test_unpadded_pool_reads_input_in_place(pool, hw):
    """Unpadded pools whose windows lie inside the input read it in place (no padded copy); the input
    sits right before a PROT_NONE page, so one float read past it would fault."""
    x = _guarded_array((1, 3) + hw)
    x[...] = np.random.default_rng(1).standard_normal(x.shape, dtype=np.float32)
    _check_pool_in_place(pool, x)


def _check_pool_in_place(pool, x):
    """`pool` compiles without a scratch buffer and matches torch on the (guarded) array x."""
    from lrc.codegen.lower import lower_to_kernels

    model = nn.Sequential(pool).eval()
    assert "memref.alloc" not in str(lower_to_kernels(lrc.import_model(model, (torch.from_numpy(x.copy()),))))
    cm = lrc.compile(model, (torch.from_numpy(x.copy()),))
    with torch.no_grad():
        ref = pool(torch.from_numpy(x.copy()))
    assert_matches(ref, cm(x), f"{pool} {tuple(x.shape[2:])}")


PADDED_POOLS = [
    (nn.MaxPool2d(3, stride=2, padding=1), (112, 112)),  # the ResNet stem's pool
    (nn.MaxPool2d(3, stride=2, padding=1), (13, 21)),    # odd sizes: partial last vectors
    (nn.MaxPool2d(3, stride=1, padding=1), (9, 30)),
    (nn.MaxPool2d(5, stride=2, padding=2), (17, 40)),
    (nn.MaxPool2d(3, stride=2, padding=1, dilation=2), (15, 37)),
    (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (14, 26)),  # a window past the bottom/right
    (nn.MaxPool2d((3, 2), stride=(1, 2), padding=(1, 1)), (8, 19)),
    (nn.MaxPool2d(3, stride=2, padding=1), (5, 6)),      # narrower than a vector
    (nn.AvgPool2d(3, stride=2, padding=1), (19, 35)),
    (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (12, 33)),
    (nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), (10, 17)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (11, 24)),
]


@pytest.mark.parametrize("side", ["start", "end"])
@pytest.mark.parametrize("pool,hw", PADDED_POOLS)
def test_padded_pool_reads_input_in_place(pool, hw, side):
    """Padded pools read the input in place as well (rows in the padding left out of a window, columns
    in it filled): no scratch copy, and nothing read before or after the input, which sits right
    after / before a PROT_NONE page. Negative inputs check that the max's padding never wins."""
    x = _guarded_array((2, 3) + hw, side)
    x[...] = np.random.default_rng(2).standard_normal(x.shape, dtype=np.float32) - 3.0
    _check_pool_in_place(pool, x)
