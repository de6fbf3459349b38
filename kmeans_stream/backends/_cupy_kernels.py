"""The CUDA C++ kernels of the cupy backend, and the one place that compiles them.

Four modules, compiled with NVRTC on first use (CuPy caches the binaries on disk, so a new
process loads them instead of compiling); the sources of the last three are in
`kmeans_stream.backends._cupy_src_stream` and `kmeans_stream.backends._cupy_src_matrix`:

- ``fused``, per dtype: the small d * K assignment, centers in shared memory and no n x K
  matrix: `assign_fused` (one or several lanes a row) for every padded width in
  `FUSED_WIDTHS`, `assign_rows` (several rows a lane) for those of `ASSIGN_ROWS`.
- ``persistent``, per dtype, launched cooperatively: a whole streaming pass in one launch with
  one device-wide barrier per mini-batch: `stream_persistent`, and `stream_persistent_v2` in the
  forms of `v2_forms`.
- ``generic``, per dtype: the matrix-product argmin, the per-batch streaming update, Lloyd's
  update, transform; and the float64 seeding kernels.
- ``mma``, float32: `assign_mma`, the large-K assignment on TF32 tensor cores with the argmin
  fused (precision "tf32").

Conventions of every kernel: row ``p`` of a call is ``X[order[p]]`` when ``order`` is given
(else ``X[p]``) and its weight ``weights[that row]`` (1 when ``weights`` is null); sums and
counts are float64; rows are ``i64``. Arguments are marked IN, OUT or INOUT. This module imports
CuPy only inside its functions, so importing it never needs CuPy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ._cupy_src_matrix import GENERIC, MMA, SEEDING
from ._cupy_src_stream import PERSISTENT

# Padded feature widths of the fused kernels: a row of d features is held in D >= d registers
# (the padding is zero), so one instantiation serves every d up to D.
FUSED_WIDTHS = {np.dtype(np.float32): (4, 8, 16, 32, 64), np.dtype(np.float64): (4, 8, 16, 32)}
# Rows per lane of `assign_rows` compiled for each padded width (registers: R x D values).
ASSIGN_ROWS = {np.dtype(np.float32): {4: (2, 4), 8: (2, 4), 16: (2, 4), 32: (2,)},
               np.dtype(np.float64): {4: (2, 4), 8: (2, 4), 16: (2,)}}
# Threads per block of the first persistent streaming kernel (its __launch_bounds__).
PERSISTENT_THREADS = 512
# The forms `stream_persistent_v2` is compiled in at each width: (prefetch, (threads a block,
# blocks a multiprocessor)) of its launch bounds. 512 x 1 leaves up to 128 registers a thread,
# 512 x 2 and 1024 x 1 64; prefetching holds two rows of D values in registers, so it is
# compiled up to width 16, and with 64 registers for float32 only (float64 spills there).
PERSISTENT_V2_PREFETCH_MAX = 16
# `assign_mma` forms: k-steps of 8 features (d <= 8 KS) -> 16-row tiles a warp (MT), at most
# 64 registers of A fragments (MT x KS x 4).
MMA_FORMS = {2: (1, 2), 4: (1, 2), 8: (1, 2), 16: (1,)}
# Threads per block of the fused assignment (its __launch_bounds__).
FUSED_THREADS = 256
# Dynamic shared memory a fused kernel may take without raising the per-kernel limit (48 KB
# with the static shared memory; 2 KB are left for that).
SHARED_BYTES = 46 * 1024

_COMMON = r"""
typedef long long i64;
#define FULL_MASK 0xffffffffu
// i over [0, n) spread over every thread of the grid.
#define FOR_GRID(i, n)                                               \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (i64)gridDim.x * blockDim.x)

template <typename T> __device__ __forceinline__ T infinity();
template <> __device__ __forceinline__ float infinity<float>() {
  return __int_as_float(0x7f800000);
}
template <> __device__ __forceinline__ double infinity<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}

__device__ __forceinline__ i64 row_at(const i64* __restrict__ order, i64 p) {
  return order ? order[p] : p;
}
__device__ __forceinline__ double weight_at(const double* __restrict__ weights, i64 row) {
  return weights ? weights[row] : 1.0;
}

// Sum over aligned groups of G lanes (G a power of two, at most 32); every lane gets the sum.
__device__ __forceinline__ double group_sum(double v, int G) {
  for (int off = G >> 1; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
  return v;
}

// The best (largest) score over a group of G lanes; among equal scores the smallest center
// index, so that ties go to the first center as numpy's argmin does.
template <typename T>
__device__ __forceinline__ void group_best(T& s, int& j, int G) {
  for (int off = G >> 1; off > 0; off >>= 1) {
    const T os = __shfl_xor_sync(FULL_MASK, s, off);
    const int oj = __shfl_xor_sync(FULL_MASK, j, off);
    if (os > s || (os == s && oj < j)) { s = os; j = oj; }
  }
}

// Sum of v over the block, valid in warp 0. Every thread must call it (blockDim a multiple of
// 32); the leading barrier lets it be called repeatedly.
__device__ double block_sum(double v) {
  __shared__ double part[32];
  v = group_sum(v, 32);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) part[warp] = v;
  __syncthreads();
  double r = 0.0;
  if (warp == 0) {
    r = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0;
    r = group_sum(r, 32);
  }
  return r;
}

// INOUT total += the block's sum of v: one atomic per block.
__device__ __forceinline__ void add_block_total(double v, double* total) {
  const double r = block_sum(v);
  if (threadIdx.x == 0) atomicAdd(total, r);
}

// numpy's running-mean mix (1 - p) c + p (s / m), each operation rounded as numpy rounds it:
// no fused multiply-add, so that equal sums give bit-equal centers.
__device__ __forceinline__ double mix_center(double c, double p, double s, double m) {
  return __dadd_rn(__dmul_rn(__dadd_rn(1.0, -p), c), __dmul_rn(p, __ddiv_rn(s, m)));
}
"""

_FUSED = r"""
// IN a row of d <= D features into registers, zero padded (and all zero for an invalid row).
// 16-byte loads where the host found the rows 16-byte aligned.
template <typename T, int D>
__device__ __forceinline__ void load_row(const T* __restrict__ src, int d, bool valid,
                                         bool aligned, T (&x)[D]) {
#pragma unroll
  for (int k = 0; k < D; ++k) x[k] = T(0);
  if (!valid) return;
  if constexpr (sizeof(T) == 4 && D % 4 == 0) {
    if (aligned) {
      const float4* s4 = reinterpret_cast<const float4*>(src);
#pragma unroll
      for (int q = 0; q < D / 4; ++q) {
        if (4 * q < d) {
          const float4 v = __ldg(s4 + q);
          x[4 * q] = v.x; x[4 * q + 1] = v.y; x[4 * q + 2] = v.z; x[4 * q + 3] = v.w;
        }
      }
      return;
    }
  }
  if constexpr (sizeof(T) == 8 && D % 2 == 0) {
    if (aligned) {
      const double2* s2 = reinterpret_cast<const double2*>(src);
#pragma unroll
      for (int q = 0; q < D / 2; ++q) {
        if (2 * q < d) { const double2 v = __ldg(s2 + q); x[2 * q] = v.x; x[2 * q + 1] = v.y; }
      }
      return;
    }
  }
#pragma unroll
  for (int k = 0; k < D; ++k) if (k < d) x[k] = __ldg(src + k);
}

// x . c over D features, four partial sums (short dependency chains); vector loads of c from
// shared memory where the row stride keeps them aligned (vec).
template <typename T, int D>
__device__ __forceinline__ T dot_center(const T (&x)[D], const T* c, bool vec) {
  T s0 = T(0), s1 = T(0), s2 = T(0), s3 = T(0);
  if constexpr (sizeof(T) == 4 && D % 4 == 0) {
    if (vec) {
      const float4* c4 = reinterpret_cast<const float4*>(c);
#pragma unroll
      for (int q = 0; q < D / 4; ++q) {
        const float4 v = c4[q];
        s0 = fmaf(x[4 * q], v.x, s0); s1 = fmaf(x[4 * q + 1], v.y, s1);
        s2 = fmaf(x[4 * q + 2], v.z, s2); s3 = fmaf(x[4 * q + 3], v.w, s3);
      }
      return (s0 + s1) + (s2 + s3);
    }
  }
#pragma unroll
  for (int k = 0; k < D; k += 4) {
    s0 = fma(x[k], c[k], s0);
    if (k + 1 < D) s1 = fma(x[k + 1], c[k + 1], s1);
    if (k + 2 < D) s2 = fma(x[k + 2], c[k + 2], s2);
    if (k + 3 < D) s3 = fma(x[k + 3], c[k + 3], s3);
  }
  return (s0 + s1) + (s2 + s3);
}

// The nearest of the K centers in shared memory (row stride DS, half squared norms hn_s) to x,
// searched by a group of G lanes (lane lig takes centers lig, lig + G, ...): the largest
// x.c - |c|^2/2, the first center among equals. Every lane of the warp must call it.
template <typename T, int D>
__device__ __forceinline__ int nearest_center(const T (&x)[D], const T* c_s, const T* hn_s,
                                              int K, int DS, int G, int lig) {
  T best = -infinity<T>();
  int bj = lig < K ? lig : 0x7fffffff;
  const bool vec = (G == 1);
#pragma unroll 2
  for (int j = lig; j < K; j += G) {
    const T s = dot_center<T, D>(x, c_s + j * DS, vec) - hn_s[j];
    if (s > best) { best = s; bj = j; }
  }
  group_best(best, bj, G);
  return bj;
}

// Exact squared distance of x to the center c (shared memory), in float64, split over the G
// lanes of the group; every lane gets it.
template <typename T, int D>
__device__ __forceinline__ double group_sq_dist(const T (&x)[D], const T* c, int G, int lig) {
  double dd = 0.0;
#pragma unroll
  for (int k = 0; k < D; ++k) {
    if ((k & (G - 1)) == lig) { const double t = (double)x[k] - (double)c[k]; dd = fma(t, t, dd); }
  }
  return group_sum(dd, G);
}

// Row stride of the centers in shared memory: D (aligned, vector loads) for one lane per row;
// odd for several, so that lanes reading different centers hit different banks.
__device__ __forceinline__ int center_stride(int D, int G) { return G == 1 ? D : (D | 1); }

template <typename T, int D>
__device__ __forceinline__ T half_sq_norm_padded(const T* c) {
  double acc = 0.0;
#pragma unroll
  for (int k = 0; k < D; ++k) acc = fma((double)c[k], (double)c[k], acc);
  return (T)(0.5 * acc);
}

// OUT c_s (K rows of stride DS, zero padded from d to D) and hn_s from the global centers.
template <typename T, int D>
__device__ void load_centers(const T* __restrict__ centers, int K, int d, int DS, T* c_s,
                             T* hn_s) {
  for (int e = threadIdx.x; e < K * D; e += blockDim.x) {
    const int j = e / D, k = e - j * D;
    c_s[j * DS + k] = k < d ? centers[(i64)j * d + k] : T(0);
  }
  __syncthreads();
  for (int j = threadIdx.x; j < K; j += blockDim.x) {
    hn_s[j] = half_sq_norm_padded<T, D>(c_s + j * DS);
  }
  __syncthreads();
}

// Nearest center of rows p in [0, n), the fused path for small d * K (no n x K matrix): the
// centers live in shared memory, G lanes share a row.
// IN X (rows of d), order (nullable), weights (nullable), centers (K, d);
// OUT labels (n,), sq_dist (n,) or null; INOUT total += sum of weight x squared distance.
// Shared memory: K * center_stride(D, G) + K elements of T.
template <typename T, typename L, int D>
__global__ void __launch_bounds__(256) assign_fused(
    const T* __restrict__ X, const i64* __restrict__ order, const double* __restrict__ weights,
    i64 n, int d, int aligned, const T* __restrict__ centers, int K, int G,
    L* __restrict__ labels, double* __restrict__ sq_dist, double* total) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int DS = center_stride(D, G);
  T* c_s = reinterpret_cast<T*>(smem);
  T* hn_s = c_s + K * DS;
  load_centers<T, D>(centers, K, d, DS, c_s, hn_s);
  const int lane = threadIdx.x & 31, lig = lane & (G - 1), rows_per_warp = 32 / G;
  const i64 warp0 = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const i64 n_warps = ((i64)gridDim.x * blockDim.x) >> 5;
  double local = 0.0;
  for (i64 base = warp0 * rows_per_warp; base < n; base += n_warps * rows_per_warp) {
    const i64 p = base + lane / G;
    const bool valid = p < n;
    const i64 row = valid ? row_at(order, p) : 0;
    T x[D];
    load_row<T, D>(X + row * d, d, valid, aligned != 0, x);
    const int j = nearest_center<T, D>(x, c_s, hn_s, K, DS, G, lig);
    const double dd = group_sq_dist<T, D>(x, c_s + j * DS, G, lig);
    if (valid && lig == 0) {
      labels[p] = (L)j;
      if (sq_dist) sq_dist[p] = dd;
      local += weight_at(weights, row) * dd;
    }
  }
  add_block_total(local, total);
}

// s[r] = x[r] . c over D features for R rows at once: each vector load of the center from
// shared memory (a broadcast: every lane reads the same center) feeds R rows.
template <typename T, int D, int R>
__device__ __forceinline__ void dot_rows(const T (&x)[R][D], const T* c, T (&s)[R]) {
#pragma unroll
  for (int r = 0; r < R; ++r) s[r] = T(0);
  if constexpr (sizeof(T) == 4 && D % 4 == 0) {
    const float4* c4 = reinterpret_cast<const float4*>(c);
#pragma unroll
    for (int q = 0; q < D / 4; ++q) {
      const float4 v = c4[q];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        s[r] = fmaf(x[r][4 * q], v.x, s[r]); s[r] = fmaf(x[r][4 * q + 1], v.y, s[r]);
        s[r] = fmaf(x[r][4 * q + 2], v.z, s[r]); s[r] = fmaf(x[r][4 * q + 3], v.w, s[r]);
      }
    }
  } else if constexpr (sizeof(T) == 8 && D % 2 == 0) {
    const double2* c2 = reinterpret_cast<const double2*>(c);
#pragma unroll
    for (int q = 0; q < D / 2; ++q) {
      const double2 v = c2[q];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        s[r] = fma(x[r][2 * q], v.x, s[r]); s[r] = fma(x[r][2 * q + 1], v.y, s[r]);
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < D; ++k) {
      const T v = c[k];
#pragma unroll
      for (int r = 0; r < R; ++r) s[r] = fma(x[r][k], v, s[r]);
    }
  }
}

// Squared distance of x to c (D features, zero padded, 16-byte aligned in shared memory), summed
// in float64. The differences are taken in T unless `wide`: a float32 difference of two float32
// numbers is within 2^-24 of the exact one (no cancellation can follow, the squares being
// positive), and it saves the float64 conversion of c, which Hopper does at a sixteenth of the
// float32 rate. c is read with vector loads: the lanes of a warp read different centers.
template <typename T, int D>
__device__ __forceinline__ double row_sq_dist(const T (&x)[D], const T* c, bool wide) {
  constexpr int V = 16 / sizeof(T);
  T cv[D];
#pragma unroll
  for (int q = 0; q < D / V; ++q) {
    if constexpr (V == 4) {
      const float4 v = reinterpret_cast<const float4*>(c)[q];
      cv[4 * q] = v.x; cv[4 * q + 1] = v.y; cv[4 * q + 2] = v.z; cv[4 * q + 3] = v.w;
    } else {
      const double2 v = reinterpret_cast<const double2*>(c)[q];
      cv[2 * q] = v.x; cv[2 * q + 1] = v.y;
    }
  }
  double dd = 0.0;
#pragma unroll
  for (int k = 0; k < D; ++k) {
    const double t = wide ? (double)x[k] - (double)cv[k] : (double)(x[k] - cv[k]);
    dd = fma(t, t, dd);
  }
  return dd;
}

// The fused assignment with R rows per lane (one lane a row, for calls with rows enough to fill
// the device): lane l of a warp takes rows base + r * 32 + l, r < R, so its loads of R rows are
// in flight together and the label stores of each r are coalesced. Arguments as assign_fused's,
// without G; `wide` as row_sq_dist's. The centers' rows in shared memory are D + 16 bytes
// apart: aligned for the vector loads, and the lanes reading different winners in row_sq_dist
// spread over the banks. Shared memory: K * (D + 16 / sizeof(T)) + K elements of T.
template <typename T, typename L, int D, int R>
__global__ void __launch_bounds__(256) assign_rows(
    const T* __restrict__ X, const i64* __restrict__ order, const double* __restrict__ weights,
    i64 n, int d, int aligned, const T* __restrict__ centers, int K, int wide,
    L* __restrict__ labels, double* __restrict__ sq_dist, double* total) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int DS = D + 16 / sizeof(T);
  T* c_s = reinterpret_cast<T*>(smem);
  T* hn_s = c_s + K * DS;
  load_centers<T, D>(centers, K, d, DS, c_s, hn_s);
  const int lane = threadIdx.x & 31;
  const i64 warp0 = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const i64 n_warps = ((i64)gridDim.x * blockDim.x) >> 5;
  double local = 0.0;
  for (i64 base = warp0 * 32 * R; base < n; base += n_warps * 32 * R) {
    T x[R][D];
    i64 row[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const i64 p = base + r * 32 + lane;
      row[r] = p < n ? row_at(order, p) : 0;
      load_row<T, D>(X + row[r] * d, d, p < n, aligned != 0, x[r]);
    }
    T best[R];
    int bj[R];
#pragma unroll
    for (int r = 0; r < R; ++r) { best[r] = -infinity<T>(); bj[r] = 0; }
#pragma unroll 2
    for (int j = 0; j < K; ++j) {
      T s[R];
      dot_rows<T, D, R>(x, c_s + j * DS, s);
      const T h = hn_s[j];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const T v = s[r] - h;
        if (v > best[r]) { best[r] = v; bj[r] = j; }
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const i64 p = base + r * 32 + lane;
      if (p < n) {
        const double dd = row_sq_dist<T, D>(x[r], c_s + bj[r] * DS, wide != 0);
        labels[p] = (L)bj[r];
        if (sq_dist) sq_dist[p] = dd;
        local += weight_at(weights, row[r]) * dd;
      }
    }
  }
  add_block_total(local, total);
}
"""

OPTIONS = ("-std=c++17",)


def source(kind: str, dtype: Any) -> str:
    """The CUDA source of module `kind` for `dtype`: only what its kernels use."""
    if kind == "fused":
        return _COMMON + _FUSED
    if kind == "mma":
        return _COMMON + MMA
    if kind == "persistent":
        return _COMMON + _FUSED + PERSISTENT
    return _COMMON + GENERIC + (SEEDING if np.dtype(dtype) == np.float64 else "")


def ctype(dtype: Any) -> str:
    """The C++ name of a float dtype."""
    return {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]


def fused_names(dtype: Any) -> list[str]:
    """Name expressions of the fused module of `dtype`."""
    t, dtype = ctype(dtype), np.dtype(dtype)
    names = [f"assign_fused<{t}, {lab}, {w}>" for w in FUSED_WIDTHS[dtype]
             for lab in ("int", "long long")]
    return names + [rows_name(dtype, lab, w, r) for w, rows in ASSIGN_ROWS[dtype].items()
                    for r in rows for lab in ("int", "long long")]


def rows_name(dtype: Any, label: str, width: int, rows: int) -> str:
    """The name expression of `assign_rows` for label type `label` ('int' or 'long long')."""
    return f"assign_rows<{ctype(dtype)}, {label}, {width}, {rows}>"


def persistent_names(dtype: Any) -> list[str]:
    """Name expressions of the persistent (cooperative) module of `dtype`."""
    t = ctype(dtype)
    names = [f"stream_persistent<{t}, {w}>" for w in FUSED_WIDTHS[np.dtype(dtype)]]
    for w in FUSED_WIDTHS[np.dtype(dtype)]:
        names += [v2_name(dtype, w, p, bounds) for p, bounds in v2_forms(dtype, w)]
    return names


def v2_forms(dtype: Any, width: int) -> tuple[tuple[bool, tuple[int, int]], ...]:
    """The (prefetch, launch bounds) `stream_persistent_v2` is compiled in at this width."""
    if width > PERSISTENT_V2_PREFETCH_MAX:
        return ((False, (512, 1)),)
    both = [(p, b) for b in ((512, 1), (512, 2), (1024, 1)) for p in (False, True)]
    if np.dtype(dtype) == np.float32:
        return tuple(both)
    return tuple((p, b) for p, b in both if b == (512, 1) or (b == (512, 2) and not p))


def v2_name(dtype: Any, width: int, prefetch: bool, bounds: tuple[int, int]) -> str:
    """The name expression of `stream_persistent_v2`."""
    return (f"stream_persistent_v2<{ctype(dtype)}, {width}, {str(prefetch).lower()}, "
            f"{bounds[0]}, {bounds[1]}>")


def generic_names(dtype: Any) -> list[str]:
    """Name expressions of the generic module of `dtype` (the seeding kernels with float64)."""
    t = ctype(dtype)
    names = [f"half_sq_norms<{t}>", f"argmin_scores<{t}, int>", f"argmin_scores<{t}, long long>",
             f"accumulate_labelled<{t}>", f"update_centers<{t}>", f"lloyd_update<{t}>",
             f"transform_direct<{t}>"]
    if t == "double":
        names += ["plain_refresh", "row_sq_norms", "scan_and_draw", "candidate_potentials",
                  "choose_and_update"]
    return names


def mma_names(dtype: Any) -> list[str]:
    """Name expressions of the TF32 tensor-core module (float32 only)."""
    if np.dtype(dtype) != np.float32:
        return []
    return [mma_name(lab, ks, mt) for ks, mts in MMA_FORMS.items() for mt in mts
            for lab in ("int", "long long")]


def mma_name(label: str, k_steps: int, m_tiles: int) -> str:
    """The name expression of `assign_mma`: chunks of 64 centers (32 for 16 k-steps)."""
    return f"assign_mma<{label}, {k_steps}, {m_tiles}, {4 if k_steps == 16 else 8}>"


MODULES = {"fused": fused_names, "persistent": persistent_names, "generic": generic_names,
           "mma": mma_names}


@functools.cache
def module(kind: str, dtype_name: str) -> Any:
    """The compiled RawModule `kind` ('fused', 'persistent', 'generic') for a dtype name."""
    import cupy

    names = MODULES[kind](np.dtype(dtype_name))
    return cupy.RawModule(code=source(kind, dtype_name), options=OPTIONS, name_expressions=names,
                          enable_cooperative_groups=(kind == "persistent"))


@functools.cache
def kernel(kind: str, name: str, dtype: Any) -> Any:
    """One compiled kernel: `name` is its name expression in module `kind` of `dtype`."""
    return module(kind, np.dtype(dtype).name).get_function(name)
