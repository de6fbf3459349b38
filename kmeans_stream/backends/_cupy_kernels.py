"""The CUDA C++ kernels of the cupy backend, and the one place that compiles them.

Three modules of one source, compiled with NVRTC on first use (CuPy caches the binaries on
disk, so a new process loads them instead of compiling):

- ``fused``, per dtype: `assign_fused` for every padded width in `FUSED_WIDTHS` (small d * K:
  centers in shared memory, no n x K matrix).
- ``persistent``, per dtype, launched cooperatively: `stream_persistent`, a whole streaming pass
  in one launch with one device-wide barrier per mini-batch.
- ``generic``, per dtype: the matrix-product argmin, the per-batch streaming update, Lloyd's
  update, transform; and the float64 seeding kernels.

Conventions of every kernel: row ``p`` of a call is ``X[order[p]]`` when ``order`` is given
(else ``X[p]``) and its weight ``weights[that row]`` (1 when ``weights`` is null); sums and
counts are float64; rows are ``i64``. Arguments are marked IN, OUT or INOUT. This module imports
CuPy only inside its functions, so importing it never needs CuPy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

# Padded feature widths of the fused kernels: a row of d features is held in D >= d registers
# (the padding is zero), so one instantiation serves every d up to D.
FUSED_WIDTHS = {np.dtype(np.float32): (4, 8, 16, 32, 64), np.dtype(np.float64): (4, 8, 16, 32)}
# Threads per block of the persistent streaming kernel (its __launch_bounds__).
PERSISTENT_THREADS = 512
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
"""

_PERSISTENT = r"""
// Device-wide barrier for a cooperative launch: `count` is zeroed before the launch and the
// k-th barrier waits for k * gridDim.x arrivals. The fences order every thread's writes (the
// block barrier first) before the arrival, and the waiting after it.
__device__ __forceinline__ unsigned long long load_acquire(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.acquire.gpu.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ void grid_barrier(unsigned long long* count, unsigned long long target) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(count, 1ULL);
    while (load_acquire(count) < target) { }
    __threadfence();
  }
  __syncthreads();
}

// INOUT: zero this block's share of one (sums, mass) buffer; cache-global stores, since other
// blocks read the buffer through L2.
__device__ void zero_share(double* sums, double* mass, i64 KD, int K) {
  FOR_GRID(e, KD) __stcg(sums + e, 0.0);
  FOR_GRID(e, (i64)K) __stcg(mass + e, 0.0);
}

// The running-mean update of one batch, applied by every block to its own copy of the centers
// (c_s, hn_s) and counts (cnt_s) from the batch's sums and mass (IN, read through L2: the L1
// copy of an earlier batch's values would be stale). Identical arithmetic in every block, so
// every copy stays identical.
template <typename T, int D>
__device__ void apply_batch(const double* sums, const double* mass, double decay, int K, int d,
                            int DS, T* c_s, T* hn_s, double* cnt_s, double* p_s, double* m_s) {
  for (int j = threadIdx.x; j < K; j += blockDim.x) {
    const double m = __ldcg(mass + j);
    const double n = __dmul_rn(cnt_s[j], decay);
    p_s[j] = m > 0.0 ? __ddiv_rn(m, __dadd_rn(n, m)) : 0.0;
    m_s[j] = m;
    cnt_s[j] = __dadd_rn(n, m);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < K * d; e += blockDim.x) {
    const int j = e / d;
    if (m_s[j] > 0.0) {
      T* c = c_s + j * DS + (e - j * d);
      *c = (T)mix_center((double)*c, p_s[j], __ldcg(sums + e), m_s[j]);
    }
  }
  __syncthreads();
  for (int j = threadIdx.x; j < K; j += blockDim.x) {
    if (m_s[j] > 0.0) hn_s[j] = half_sq_norm_padded<T, D>(c_s + j * DS);
  }
  __syncthreads();
}

// Assign the rows of one batch (positions [p0, p0 + m)) and add them to the batch's sums and
// mass (INOUT, atomics at L2): lane lig of a row's group adds features lig, lig + G, ...
template <typename T, int D>
__device__ void accumulate_batch(const T* __restrict__ X, const i64* __restrict__ order,
                                 const double* __restrict__ weights, i64 p0, i64 m, int d,
                                 bool aligned, const T* c_s, const T* hn_s, int K, int DS, int G,
                                 double* sums, double* mass) {
  const int lane = threadIdx.x & 31, lig = lane & (G - 1), rows_per_warp = 32 / G;
  const i64 warp0 = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const i64 n_warps = ((i64)gridDim.x * blockDim.x) >> 5;
  for (i64 base = warp0 * rows_per_warp; base < m; base += n_warps * rows_per_warp) {
    const i64 q = base + lane / G;
    const bool valid = q < m;
    const i64 row = valid ? row_at(order, p0 + q) : 0;
    T x[D];
    load_row<T, D>(X + row * d, d, valid, aligned, x);
    const int j = nearest_center<T, D>(x, c_s, hn_s, K, DS, G, lig);
    if (valid) {
      const double w = weight_at(weights, row);
      double* s = sums + (i64)j * d;
#pragma unroll
      for (int k = 0; k < D; ++k) {
        if (k < d && (k & (G - 1)) == lig) atomicAdd(s + k, w * (double)x[k]);
      }
      if (lig == 0) atomicAdd(mass + j, w);
    }
  }
}

// SageMaker's streaming update over rows [0, n) in batches of batch_size, the whole pass in one
// cooperative launch. Each block keeps its own copy of the centers and counts in shared memory
// and updates it from the sums of the previous batch, so one device-wide barrier per batch
// suffices. The sums rotate over three buffers: batch b adds into buffer b % 3 while the blocks
// read buffer (b - 1) % 3 and zero buffer (b + 1) % 3, which nobody reads or writes until the
// next barrier has passed.
// IN X, order (nullable), weights (nullable), decays (per batch, nullable: 1);
// INOUT centers (K, d), counts (K,); scratch sums (3, K, d), mass (3, K), barrier (zeroed).
// Shared memory: 3 K doubles (rounded up to 16 bytes), then K * center_stride + K elements of T.
template <typename T, int D>
__global__ void __launch_bounds__(512) stream_persistent(
    const T* __restrict__ X, const i64* __restrict__ order, const double* __restrict__ weights,
    i64 n, int d, int aligned, i64 batch_size, const double* __restrict__ decays, T* centers,
    double* counts, int K, int G, double* sums, double* mass, unsigned long long* barrier) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int DS = center_stride(D, G);
  double* cnt_s = reinterpret_cast<double*>(smem);
  double* p_s = cnt_s + K;
  double* m_s = p_s + K;
  T* c_s = reinterpret_cast<T*>(smem + ((3 * K * sizeof(double) + 15) / 16) * 16);
  T* hn_s = c_s + K * DS;
  for (int j = threadIdx.x; j < K; j += blockDim.x) cnt_s[j] = counts[j];
  load_centers<T, D>(centers, K, d, DS, c_s, hn_s);
  const i64 KD = (i64)K * d;
  unsigned long long arrivals = gridDim.x;
  zero_share(sums, mass, KD, K);
  grid_barrier(barrier, arrivals);
  const i64 n_batches = (n + batch_size - 1) / batch_size;
  for (i64 b = 0; b < n_batches; ++b) {
    if (b > 0) {
      const int prev = (int)((b - 1) % 3);
      apply_batch<T, D>(sums + prev * KD, mass + prev * K, decays ? decays[b - 1] : 1.0, K, d,
                        DS, c_s, hn_s, cnt_s, p_s, m_s);
    }
    const int next = (int)((b + 1) % 3), cur = (int)(b % 3);
    zero_share(sums + next * KD, mass + next * K, KD, K);
    const i64 p0 = b * batch_size;
    const i64 m = min(batch_size, n - p0);
    accumulate_batch<T, D>(X, order, weights, p0, m, d, aligned != 0, c_s, hn_s, K, DS, G,
                           sums + cur * KD, mass + cur * K);
    arrivals += gridDim.x;
    grid_barrier(barrier, arrivals);
  }
  const int last = (int)((n_batches - 1) % 3);
  apply_batch<T, D>(sums + last * KD, mass + last * K,
                    decays ? decays[n_batches - 1] : 1.0, K, d, DS, c_s, hn_s, cnt_s, p_s, m_s);
  if (blockIdx.x == 0) {
    for (int e = threadIdx.x; e < K * d; e += blockDim.x) {
      const int j = e / d;
      centers[e] = c_s[j * DS + (e - j * d)];
    }
    for (int j = threadIdx.x; j < K; j += blockDim.x) counts[j] = cnt_s[j];
  }
}
"""

_GENERIC = r"""
// OUT out[j] = |c_j|^2 / 2 (accumulated in float64), the offsets of the matrix-product scores.
template <typename T>
__global__ void half_sq_norms(const T* __restrict__ centers, int K, int d, T* __restrict__ out) {
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < K; j += gridDim.x * blockDim.x) {
    const T* c = centers + (i64)j * d;
    double acc = 0.0;
    for (int k = 0; k < d; ++k) acc = fma((double)c[k], (double)c[k], acc);
    out[j] = (T)(0.5 * acc);
  }
}

// The argmin of a tile of matrix-product scores: one warp per row r of the tile, the largest
// S[r, j] - hn[j] (first among equals), then the exact squared distance in float64.
// IN S (rows, K) = Xt @ centers.T, hn (K,), Xt (rows, d), wt (rows,) or null, centers (K, d);
// OUT labels (rows,), sq_dist (rows,) or null; INOUT total += sum of weight x squared distance.
template <typename T, typename L>
__global__ void argmin_scores(const T* __restrict__ S, const T* __restrict__ hn, int K, i64 rows,
                              const T* __restrict__ Xt, const double* __restrict__ wt, int d,
                              const T* __restrict__ centers, L* __restrict__ labels,
                              double* __restrict__ sq_dist, double* total) {
  const int lane = threadIdx.x & 31;
  const i64 warp0 = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const i64 n_warps = ((i64)gridDim.x * blockDim.x) >> 5;
  double local = 0.0;
  for (i64 r = warp0; r < rows; r += n_warps) {
    const T* s_row = S + r * K;
    T best = -infinity<T>();
    int bj = lane < K ? lane : 0x7fffffff;
    for (int j = lane; j < K; j += 32) {
      const T s = s_row[j] - hn[j];
      if (s > best) { best = s; bj = j; }
    }
    group_best(best, bj, 32);
    const T* x = Xt + r * d;
    const T* c = centers + (i64)bj * d;
    double dd = 0.0;
    for (int k = lane; k < d; k += 32) {
      const double t = (double)x[k] - (double)c[k];
      dd = fma(t, t, dd);
    }
    dd = group_sum(dd, 32);
    if (lane == 0) {
      labels[r] = (L)bj;
      if (sq_dist) sq_dist[r] = dd;
      local += weight_at(wt, r) * dd;
    }
  }
  add_block_total(local, total);
}

// INOUT sums (K, d) += weight x row and mass (K,) += weight for rows p in [0, n) of the given
// labels (IN, int32): one warp per row, so the atomics of a row are coalesced.
template <typename T>
__global__ void accumulate_labelled(const T* __restrict__ X, const i64* __restrict__ order,
                                    const double* __restrict__ weights, i64 n, int d,
                                    const int* __restrict__ labels, double* sums, double* mass) {
  const int lane = threadIdx.x & 31;
  const i64 warp0 = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const i64 n_warps = ((i64)gridDim.x * blockDim.x) >> 5;
  for (i64 p = warp0; p < n; p += n_warps) {
    const i64 row = row_at(order, p);
    const int j = labels[p];
    const double w = weight_at(weights, row);
    const T* x = X + row * d;
    double* s = sums + (i64)j * d;
    for (int k = lane; k < d; k += 32) atomicAdd(s + k, w * (double)x[k]);
    if (lane == 0) atomicAdd(mass + j, w);
  }
}

// The running-mean update of one batch (spec section 0), one thread per center:
// n <- decay n; p = m / (n + m); c <- (1 - p) c + p s / m; n <- n + m; then the batch's sums
// and mass are zeroed for the next one. INOUT centers, counts, sums, mass; IN decays (per
// batch, nullable: 1).
template <typename T>
__global__ void update_centers(T* centers, double* counts, double* sums, double* mass, int K,
                               int d, const double* __restrict__ decays, i64 batch) {
  const double decay = decays ? decays[batch] : 1.0;
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < K; j += gridDim.x * blockDim.x) {
    const double m = mass[j];
    const double n = __dmul_rn(counts[j], decay);
    if (m > 0.0) {
      const double p = __ddiv_rn(m, __dadd_rn(n, m));
      T* c = centers + (i64)j * d;
      double* s = sums + (i64)j * d;
      for (int k = 0; k < d; ++k) { c[k] = (T)mix_center((double)c[k], p, s[k], m); s[k] = 0.0; }
    }
    counts[j] = __dadd_rn(n, m);
    mass[j] = 0.0;
  }
}

// Lloyd's update, one thread per center: a center that received mass moves to the weighted
// mean of its rows, an empty one stays. INOUT centers, sums and mass (zeroed after use).
template <typename T>
__global__ void lloyd_update(T* centers, double* sums, double* mass, int K, int d) {
  for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < K; j += gridDim.x * blockDim.x) {
    const double m = mass[j];
    if (m > 0.0) {
      T* c = centers + (i64)j * d;
      double* s = sums + (i64)j * d;
      for (int k = 0; k < d; ++k) { c[k] = (T)__ddiv_rn(s[k], m); s[k] = 0.0; }
    }
    mass[j] = 0.0;
  }
}

// OUT out (n, K) = Euclidean distances, differences accumulated in float64 (a point equal to a
// center gets exactly 0, which the expansion |x|^2 - 2 x.c + |c|^2 would not). 16 x 16 tiles:
// blockIdx.x over rows, blockIdx.y over centers.
template <typename T>
__global__ void transform_direct(const T* __restrict__ X, i64 n, int d,
                                 const T* __restrict__ centers, int K, T* __restrict__ out) {
  __shared__ T xs[16][17];
  __shared__ T cs[16][17];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const i64 i = (i64)blockIdx.x * 16 + ty;
  const int j = blockIdx.y * 16 + tx;
  const i64 xrow = (i64)blockIdx.x * 16 + ty;
  const int crow = blockIdx.y * 16 + ty;
  double acc = 0.0;
  for (int k0 = 0; k0 < d; k0 += 16) {
    xs[ty][tx] = (xrow < n && k0 + tx < d) ? X[xrow * d + k0 + tx] : T(0);
    cs[ty][tx] = (crow < K && k0 + tx < d) ? centers[(i64)crow * d + k0 + tx] : T(0);
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const double t = (double)xs[ty][k] - (double)cs[tx][k];
      acc = fma(t, t, acc);
    }
    __syncthreads();
  }
  if (i < n && j < K) out[i * K + j] = (T)sqrt(acc);
}
"""

_SEEDING = r"""
// sum over k < n of (a[k] - b[k])^2 in numpy's pairwise order (numpy/_core/src/umath/
// loops_utils.h.src, pairwise_sum: 8 running sums over blocks of at most 128, halves above),
// each operation rounded on its own, so that it equals ((a - b) ** 2).sum() bit for bit.
__device__ __forceinline__ double sq_diff(const double* a, const double* b, i64 k) {
  const double t = __dadd_rn(a[k], -b[k]);
  return __dmul_rn(t, t);
}
__device__ double pairwise_sq_block(const double* a, const double* b, i64 n) {
  if (n < 8) {
    double res = 0.0;
    for (i64 k = 0; k < n; ++k) res = __dadd_rn(res, sq_diff(a, b, k));
    return res;
  }
  double r[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) r[q] = sq_diff(a, b, q);
  i64 k = 8;
  for (; k < n - (n % 8); k += 8) {
#pragma unroll
    for (int q = 0; q < 8; ++q) r[q] = __dadd_rn(r[q], sq_diff(a, b, k + q));
  }
  double res = __dadd_rn(__dadd_rn(__dadd_rn(r[0], r[1]), __dadd_rn(r[2], r[3])),
                         __dadd_rn(__dadd_rn(r[4], r[5]), __dadd_rn(r[6], r[7])));
  for (; k < n; ++k) res = __dadd_rn(res, sq_diff(a, b, k));
  return res;
}
__device__ double pairwise_sq(const double* a, const double* b, i64 n) {
  if (n <= 128) return pairwise_sq_block(a, b, n);
  i64 n2 = n / 2;
  n2 -= n2 % 8;  // numpy halves at a multiple of its unroll factor
  return __dadd_rn(pairwise_sq(a, b, n2), pairwise_sq(a + n2, b + n2, n - n2));
}

// INOUT closest[i] = min(closest[i], squared distance of row i to each pending row), the
// distance exactly numpy's ((X64 - X64[c]) ** 2).sum(axis=1): the refresh of plain k-means++.
__global__ void plain_refresh(const double* __restrict__ X, i64 n, int d,
                              const i64* __restrict__ pending, int n_pending,
                              double* __restrict__ closest) {
  FOR_GRID(i, n) {
    double best = closest[i];
    for (int q = 0; q < n_pending; ++q) {
      const double v = pairwise_sq(X + i * d, X + pending[q] * d, d);
      if (v < best) best = v;
    }
    closest[i] = best;
  }
}

// OUT xn[i] = |X[i]|^2 (float64 rows).
__global__ void row_sq_norms(const double* __restrict__ X, i64 n, int d, double* __restrict__ xn) {
  FOR_GRID(i, n) {
    double acc = 0.0;
    for (int k = 0; k < d; ++k) acc = fma(X[i * d + k], X[i * d + k], acc);
    xn[i] = acc;
  }
}

// One block: cum = running sums of wc (OUT), totals[step] = cum[n - 1] (OUT) and the draws
// cands[c] = min(searchsorted(cum, u_c * total, 'right'), n - 1) (OUT) for the uniforms
// u_c = uniforms[step * n_cols + c], c < n_cand: numpy's _draw.
__global__ void scan_and_draw(const double* __restrict__ wc, i64 n,
                              const double* __restrict__ uniforms, int step, int n_cols,
                              int n_cand, double* __restrict__ cum, double* __restrict__ totals,
                              i64* __restrict__ cands) {
  __shared__ double part[1024];
  const int t = threadIdx.x, nt = blockDim.x;
  const i64 seg = (n + nt - 1) / nt;
  const i64 lo = min(n, (i64)t * seg), hi = min(n, lo + seg);
  double s = 0.0;
  for (i64 i = lo; i < hi; ++i) s += wc[i];
  part[t] = s;
  __syncthreads();
  for (int off = 1; off < nt; off <<= 1) {
    const double v = t >= off ? part[t - off] : 0.0;
    __syncthreads();
    part[t] += v;
    __syncthreads();
  }
  double run = t > 0 ? part[t - 1] : 0.0;
  for (i64 i = lo; i < hi; ++i) { run += wc[i]; cum[i] = run; }
  __syncthreads();
  const double total = cum[n - 1];
  if (t < n_cand) {
    const double v = uniforms[(i64)step * n_cols + t] * total;
    i64 a = 0, b = n;
    while (a < b) {
      const i64 mid = (a + b) / 2;
      if (cum[mid] > v) b = mid; else a = mid + 1;
    }
    cands[t] = min(a, n - 1);
  }
  if (t == 0) totals[step] = total;
}

// Squared distance of row i to row c by numpy's expansion |x|^2 - 2 x.c + |c|^2, clamped at 0.
__device__ __forceinline__ double expanded_sq(const double* __restrict__ X,
                                              const double* __restrict__ xn, int d, i64 i, i64 c) {
  const double* xi = X + i * d;
  const double* xc = X + c * d;
  double dot = 0.0;
  for (int k = 0; k < d; ++k) dot = fma(xi[k], xc[k], dot);
  const double sq = (xn[i] - 2.0 * dot) + xn[c];
  return sq > 0.0 ? sq : 0.0;
}

// OUT partials[c, block] = this block's share of candidate c's potential
// sum_i w_i min(closest_i, |x_i - x_cand|^2): fixed per-block sums, added in a fixed order by
// choose_and_update, so equal candidates get bit-equal potentials (the first one wins).
__global__ void candidate_potentials(const double* __restrict__ X, const double* __restrict__ xn,
                                     const double* __restrict__ weights, i64 n, int d,
                                     const i64* __restrict__ cands, int n_cand,
                                     const double* __restrict__ closest,
                                     double* __restrict__ partials) {
  for (int c = 0; c < n_cand; ++c) {
    const i64 ci = cands[c];
    double local = 0.0;
    FOR_GRID(i, n) {
      const double sq = expanded_sq(X, xn, d, i, ci);
      const double cl = closest[i];
      local += weight_at(weights, i) * (sq < cl ? sq : cl);
    }
    const double r = block_sum(local);
    if (threadIdx.x == 0) partials[(i64)c * gridDim.x + blockIdx.x] = r;
  }
}

// The step's center: the candidate of least potential (the first among equals); indices[step]
// (OUT) gets its row and closest, wc = weight x closest (INOUT) take its distances.
__global__ void choose_and_update(const double* __restrict__ X, const double* __restrict__ xn,
                                  const double* __restrict__ weights, i64 n, int d,
                                  const i64* __restrict__ cands, int n_cand,
                                  const double* __restrict__ partials, int n_parts,
                                  double* __restrict__ closest, double* __restrict__ wc,
                                  i64* __restrict__ indices, int step) {
  __shared__ int best_s;
  if (threadIdx.x == 0) {
    double best_pot = infinity<double>();
    int best = 0;
    for (int c = 0; c < n_cand; ++c) {
      double pot = 0.0;
      for (int b = 0; b < n_parts; ++b) pot += partials[(i64)c * n_parts + b];
      if (pot < best_pot) { best_pot = pot; best = c; }
    }
    if (n_cand == 1) best = 0;
    best_s = best;
    if (blockIdx.x == 0) indices[step] = cands[best];
  }
  __syncthreads();
  const i64 bi = cands[best_s];
  FOR_GRID(i, n) {
    const double sq = expanded_sq(X, xn, d, i, bi);
    const double cl = closest[i];
    const double t = sq < cl ? sq : cl;
    closest[i] = t;
    wc[i] = weight_at(weights, i) * t;
  }
}
"""

OPTIONS = ("-std=c++17",)


def source(kind: str, dtype: Any) -> str:
    """The CUDA source of module `kind` for `dtype`: only what its kernels use."""
    if kind == "fused":
        return _COMMON + _FUSED
    if kind == "persistent":
        return _COMMON + _FUSED + _PERSISTENT
    return _COMMON + _GENERIC + (_SEEDING if np.dtype(dtype) == np.float64 else "")


def ctype(dtype: Any) -> str:
    """The C++ name of a float dtype."""
    return {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}[np.dtype(dtype)]


def fused_names(dtype: Any) -> list[str]:
    """Name expressions of the fused module of `dtype`."""
    t = ctype(dtype)
    return [f"assign_fused<{t}, {lab}, {w}>" for w in FUSED_WIDTHS[np.dtype(dtype)]
            for lab in ("int", "long long")]


def persistent_names(dtype: Any) -> list[str]:
    """Name expressions of the persistent (cooperative) module of `dtype`."""
    t = ctype(dtype)
    return [f"stream_persistent<{t}, {w}>" for w in FUSED_WIDTHS[np.dtype(dtype)]]


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


MODULES = {"fused": fused_names, "persistent": persistent_names, "generic": generic_names}


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
