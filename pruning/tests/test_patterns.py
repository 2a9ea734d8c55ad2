import pytest
import torch

from lrprune import PatternLibrary


def kernel_with(top3, centre=0.5):
    """A 3x3 kernel whose natural pattern is centre + ``top3``."""
    k = torch.full((9,), 0.01)
    k[4] = centre
    for rank, pos in enumerate(top3):
        k[pos] = 1.0 - 0.1 * rank
    return k.reshape(3, 3)


def test_from_weights_ranks_natural_patterns_by_frequency():
    kernels = [kernel_with((0, 1, 2))] * 5 + [kernel_with((6, 7, 8))] * 3 + [kernel_with((1, 3, 5))] * 1
    w = torch.stack(kernels).reshape(9, 1, 3, 3)
    lib = PatternLibrary.from_weights([w], n=3)
    assert lib.to_list() == [(0, 1, 2, 4), (4, 6, 7, 8), (1, 3, 4, 5)]


def test_centre_is_kept_even_when_small():
    w = kernel_with((0, 2, 6), centre=0.0001).reshape(1, 1, 3, 3)
    assert PatternLibrary.from_weights([w], n=1).to_list() == [(0, 2, 4, 6)]


def test_short_libraries_are_topped_up_deterministically():
    w = kernel_with((0, 1, 2)).reshape(1, 1, 3, 3)
    lib = PatternLibrary.from_weights([w], n=8)
    assert len(lib) == 8 and lib.patterns[0] == (0, 1, 2, 4)
    assert len(set(lib.patterns)) == 8
    assert all(4 in p and len(p) == 4 for p in lib)
    assert lib == PatternLibrary.from_weights([w.clone()], n=8)


def test_zero_kernels_are_ignored_and_several_weights_pool():
    a = torch.zeros(3, 1, 3, 3)
    b = kernel_with((6, 7, 8)).reshape(1, 1, 3, 3)
    assert PatternLibrary.from_weights([a, b], n=1).to_list() == [(4, 6, 7, 8)]


def test_masks_and_assign():
    lib = PatternLibrary([(0, 1, 3, 4), [[0, 0, 0], [0, 1, 1], [0, 1, 1]]], (3, 3))
    assert lib.to_list() == [(0, 1, 3, 4), (4, 5, 7, 8)]
    m = lib.masks()
    assert m.shape == (2, 9) and m.sum() == 8
    w = torch.stack([kernel_with((0, 1, 3)), kernel_with((5, 7, 8))]).reshape(1, 2, 3, 3)
    assert lib.assign(w).tolist() == [[0, 1]]


def test_library_validation():
    with pytest.raises(ValueError, match="outside a 3x3 kernel"):
        PatternLibrary([(0, 9)], (3, 3))
    with pytest.raises(ValueError, match="does not match kernel shape 3x3"):
        PatternLibrary([torch.ones(5, 5)], (3, 3))
    with pytest.raises(ValueError, match="appears twice"):
        PatternLibrary([(0, 4), (4, 0)])
    with pytest.raises(ValueError, match="at least one"):
        PatternLibrary([])
    with pytest.raises(ValueError, match="no centre"):
        PatternLibrary.from_weights([torch.randn(2, 2, 2, 2)])
    lib = PatternLibrary([(0, 4)], (3, 3))
    with pytest.raises(ValueError, match="3x3 kernels but layer 'conv' has 5x5"):
        lib.check((5, 5), "conv")


def test_candidates_count():
    assert len(list(PatternLibrary.candidates((3, 3), 4))) == 56
    assert len(list(PatternLibrary.candidates((3, 3), 4, include_centre=False))) == 126
