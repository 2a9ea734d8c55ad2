"""The serialised FKW form of a sparse conv's weights: `encode`, `decode`, `encoded_size`.

What the generated kernels read (int32 offset tables, sparse_conv.SparsePack) is built for speed;
this is the form for storing or shipping a pruned layer, and the one `storage_stats` reports.

Per layer a small header and the pattern library; then, per filter in output-channel order, the
filter's structure in a bit stream; then the stored weights as little-endian f32, densely, with no
per-weight index. The filter reorder of the kernels is not stored: it is a function of the
structure (sparse_conv sorts filters by kernel count), so a loader recomputes it.

A filter's structure is its set of kept kernels (input channels) and one pattern id per kept
kernel ("kernel" mode), or, for irregular sparsity, its set of non-zero (channel, tap) positions
("position" mode). A k-subset of n items is stored as its rank in the combinatorial number system
(colex order), in ceil(log2 C(n, k)) bits, after k in ceil(log2(n + 1)) bits. That is the fewest
bits any code can spend on a subset once k is known, which matters for 1x1 layers: every kept
kernel there is a single weight, so a 16-bit channel index per kernel costs 1.5x the value bytes,
a channel bitmap 1 + 1/(32 d) at density d, and the rank about 1 + H(d)/(32 d) (1.11x at d = 0.2
for 32 channels). When every filter keeps the same set (column and channel pruning) the set is
stored once.
"""
from __future__ import annotations

import bisect
import functools
from typing import Sequence

import numpy as np

MAGIC = b"FKW1"
KERNEL, POSITION, SHARED = 0, 1, 2  # mode byte: KERNEL or POSITION, | SHARED when stored once
# Header: magic, mode, K, Cg, KH, KW, P, least block count, bits per block count (above the least),
# as bytes and LEB128 varints: a small layer's values are a few hundred bytes, so it stays ~12.
_FIELDS = ("mode", "K", "Cg", "KH", "KW", "P", "count_lo", "count_bits")


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def _header(*values: int) -> bytes:
    return MAGIC + b"".join(_varint(v) for v in values)


def _read_header(data: bytes) -> tuple[list[int], int]:
    if data[:4] != MAGIC:
        raise ValueError("FKW: not FKW data (bad magic)")
    values, pos = [], 4
    for name in _FIELDS:
        v = shift = 0
        while True:
            if pos >= len(data) or shift > 35:
                raise ValueError(f"FKW: header field {name} truncated or too large")
            b = data[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        values.append(v)
    return values, pos


def _bits(count: int) -> int:
    """Bits to tell `count` equally likely values apart."""
    return (count - 1).bit_length() if count > 1 else 0


BLOCK = 256  # items per ranked block: ranks stay small ints and decoding is a bisect per item


@functools.lru_cache(maxsize=1)
def _pascal() -> list[list[int]]:
    """_pascal()[i][c] = C(c, i) for 0 <= c, i <= BLOCK (non-decreasing in c, so bisectable)."""
    rows = [[1] * (BLOCK + 1)]
    for i in range(1, BLOCK + 1):
        prev, row = rows[-1], [0] * (BLOCK + 1)
        for c in range(1, BLOCK + 1):
            row[c] = row[c - 1] + prev[c - 1]
        rows.append(row)
    return rows


def _blocks(n: int):
    return [(lo, min(n, lo + BLOCK)) for lo in range(0, n, BLOCK)]


def _counts(n: int, items: np.ndarray) -> list[int]:
    """Kept items per block of a sorted subset of range(n)."""
    edges = np.searchsorted(items, [hi for _, hi in _blocks(n)])
    return np.diff(edges, prepend=0).tolist()


def _subset_bits(n: int, counts: list[int], count_bits: int) -> int:
    C = _pascal()
    return sum(count_bits + _bits(C[k][hi - lo]) for (lo, hi), k in zip(_blocks(n), counts))


def _put_subset(bw, n: int, items: np.ndarray, count_lo: int, count_bits: int):
    C, at = _pascal(), 0
    for (lo, hi), k in zip(_blocks(n), _counts(n, items)):
        sub = items[at:at + k] - lo
        bw.put(k - count_lo, count_bits)
        # colex rank: the sum over i of C(sub[i], i + 1)
        bw.put(sum(C[i + 1][int(c)] for i, c in enumerate(sub)), _bits(C[k][hi - lo]))
        at += k


def _get_subset(br, n: int, count_lo: int, count_bits: int) -> list[int]:
    C, out = _pascal(), []
    for lo, hi in _blocks(n):
        m = hi - lo
        k = count_lo + br.get(count_bits)
        if k > m:
            raise ValueError(f"FKW: a block keeps {k} of {m} items")
        r, top, got = br.get(_bits(C[k][m])), m, []
        for i in range(k, 0, -1):
            c = bisect.bisect_right(C[i], r, i - 1, top) - 1  # the largest c < top with C(c, i) <= r
            if c < i - 1:
                raise ValueError("FKW: corrupt subset rank")
            got.append(lo + c)
            r -= C[i][c]
            top = c
        if r:
            raise ValueError("FKW: corrupt subset rank")
        out += got[::-1]
    return out


class _BitWriter:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value: int, width: int):
        if width:
            self.acc |= value << self.n
            self.n += width
            full = self.n // 8
            if full:
                self.out += (self.acc & ((1 << 8 * full) - 1)).to_bytes(full, "little")
                self.acc >>= 8 * full
                self.n -= 8 * full

    def finish(self) -> bytes:
        if self.n:
            self.out += self.acc.to_bytes(1, "little")
        return bytes(self.out)


class _BitReader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def get(self, width: int) -> int:
        end = self.pos + width
        if end > 8 * len(self.data):
            raise ValueError("FKW: structure stream ends early (truncated data)")
        # only the bytes holding this field: the stream can be megabytes long
        v = int.from_bytes(self.data[self.pos // 8:-(-end // 8)], "little") >> (self.pos % 8)
        self.pos = end
        return v & ((1 << width) - 1)


def _structure(weight: np.ndarray, library):
    """(mode, patterns, per-filter kept items [K][k], per-filter pattern ids [K][k] or None)."""
    from .sparse_conv import kernel_tap_sets

    K = weight.shape[0]
    patterns, ids = kernel_tap_sets(weight, library)
    candidates = []
    if patterns is not None:
        kept = [np.flatnonzero(ids[k] >= 0) for k in range(K)]
        candidates.append((KERNEL, [tuple(p) for p in patterns], kept, [ids[k][kept[k]] for k in range(K)]))
    if library is None:
        pos = weight.reshape(K, -1) != 0
        candidates.append((POSITION, [], [np.flatnonzero(pos[k]) for k in range(K)], None))
    return min(candidates, key=lambda c: _size(weight.shape, *c))


def _shared(kept, pids) -> bool:
    return len(kept) > 1 and all(np.array_equal(kept[0], s) for s in kept[1:]) and (
        pids is None or all(np.array_equal(pids[0], p) for p in pids[1:]))


def _count_range(n: int, kept, pids) -> tuple[int, int, list[list[int]]]:
    """(least block count, bits per count, block counts of each stored filter): counts are stored
    above the layer's least, in as few bits as its spread needs (pruning keeps them close)."""
    reps = kept[:1] if _shared(kept, pids) else kept
    counts = [_counts(n, s) for s in reps]
    flat = [c for cs in counts for c in cs] or [0]
    return min(flat), _bits(max(flat) - min(flat) + 1), counts


def _size(shape, mode, patterns, kept, pids) -> int:
    K, Cg, KH, KW = shape
    T = KH * KW
    n = Cg if mode == KERNEL else Cg * T
    pbits = _bits(len(patterns)) if mode == KERNEL else 0
    clo, cbits, counts = _count_range(n, kept, pids)
    bits = sum(_subset_bits(n, cs, cbits) + pbits * sum(cs) for cs in counts)
    if mode == POSITION:
        values = sum(len(s) for s in kept)
    else:
        taps = np.array([len(p) for p in patterns] or [0])
        values = int(taps[np.concatenate(pids)].sum()) if pids else 0
    head = len(_header(mode, K, Cg, KH, KW, len(patterns), clo, cbits))
    return head + len(patterns) * -(-T // 8) + -(-bits // 8) + 4 * values


def encoded_size(weight: np.ndarray, library: Sequence[Sequence[int]] | None = None) -> int:
    """len(encode(weight, library)), without building the bytes."""
    w = np.asarray(weight, np.float32)
    return _size(w.shape, *_structure(w, library))


def encode(weight: np.ndarray, library: Sequence[Sequence[int]] | None = None) -> bytes:
    """FKW bytes of `weight` [K, Cg, KH, KW]. With a library (#lr.sparsity patterns) every kept
    kernel stores its pattern's taps, zeros inside the pattern included; without one the smaller of
    the kernel form (the layer's own tap sets, if there are few) and the position form is used."""
    w = np.asarray(weight, np.float32)
    if w.ndim != 4:
        raise ValueError(f"FKW: weight must be [K, Cg, KH, KW], got shape {w.shape}")
    K, Cg, KH, KW = w.shape
    T = KH * KW
    mode, patterns, kept, pids = _structure(w, library)
    shared = _shared(kept, pids)
    n = Cg if mode == KERNEL else Cg * T
    pbits = _bits(len(patterns)) if mode == KERNEL else 0
    clo, cbits, _ = _count_range(n, kept, pids)
    head = _header(mode | (SHARED if shared else 0), K, Cg, KH, KW, len(patterns), clo, cbits)
    lib = b"".join(np.packbits(np.isin(np.arange(T), p), bitorder="little").tobytes() for p in patterns)
    bw = _BitWriter()
    for k in range(1 if shared else K):
        s = kept[k]
        _put_subset(bw, n, s, clo, cbits)
        if mode == KERNEL:
            for p in pids[k]:
                bw.put(int(p), pbits)
    flat = w.reshape(K, Cg, T)
    vals = []
    for k in range(K):
        if mode == POSITION:
            vals.append(flat[k].reshape(-1)[kept[k]])
        else:
            for c, p in zip(kept[k], pids[k]):
                vals.append(flat[k, c, list(patterns[p])])
    values = np.concatenate(vals).astype("<f4").tobytes() if vals else b""
    return head + lib + bw.finish() + values


def decode(data: bytes) -> np.ndarray:
    """The dense weight [K, Cg, KH, KW] that `encode` stored (bit for bit)."""
    (mode_byte, K, Cg, KH, KW, P, clo, cbits), pos = _read_header(data)
    mode, shared = mode_byte & ~SHARED, bool(mode_byte & SHARED)
    if mode not in (KERNEL, POSITION):
        raise ValueError(f"FKW: unknown mode {mode}")
    T = KH * KW
    lb = -(-T // 8)
    patterns = []
    for _ in range(P):
        if pos + lb > len(data):
            raise ValueError("FKW: pattern library truncated")
        taps = np.flatnonzero(np.unpackbits(np.frombuffer(data, np.uint8, lb, pos), bitorder="little")[:T])
        patterns.append(taps)
        pos += lb
    n = Cg if mode == KERNEL else Cg * T
    pbits = _bits(P) if mode == KERNEL else 0
    br = _BitReader(memoryview(data)[pos:])
    sets = []
    for _ in range(1 if shared else K):
        items = _get_subset(br, n, clo, cbits)
        ps = [br.get(pbits) for _ in items] if mode == KERNEL else None
        if ps and max(ps) >= P:
            raise ValueError(f"FKW: pattern id {max(ps)} >= library size {P}")
        sets.append((items, ps))
    if shared:
        sets = sets * K
    pos += -(-br.pos // 8)
    nvals = sum(len(i) if mode == POSITION else sum(len(patterns[p]) for p in ps) for i, ps in sets)
    if len(data) != pos + 4 * nvals:
        raise ValueError(f"FKW: {len(data) - pos} value bytes, expected {4 * nvals}")
    vals = np.frombuffer(data, "<f4", nvals, pos).astype(np.float32)
    w = np.zeros((K, Cg * T) if mode == POSITION else (K, Cg, T), np.float32)
    at = 0
    for k, (items, ps) in enumerate(sets):
        if mode == POSITION:
            w[k, items] = vals[at:at + len(items)]
            at += len(items)
        else:
            for c, p in zip(items, ps):
                w[k, c, patterns[p]] = vals[at:at + len(patterns[p])]
                at += len(patterns[p])
    return w.reshape(K, Cg, KH, KW)
