"""CUDA source of the persistent streaming kernels of the cupy backend (compiled, with the
common and fused sources they use, by `kmeans_stream.backends._cupy_kernels`): the first kernel,
`stream_persistent`, and the second, `stream_persistent_v2`, with its options and probes."""

PERSISTENT = r"""
// Device-wide barrier for a cooperative launch: `count` is zeroed before the launch and the
// k-th barrier waits for k * gridDim.x arrivals. The fences order every thread's writes (the
// block barrier first) before the arrival, and the waiting after it.
__device__ __forceinline__ unsigned long long load_acquire(const unsigned long long* p) {
  unsigned long long v;
  asm volatile("ld.acquire.gpu.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ void grid_barrier(unsigned long long* count, unsigned long long target,
                             bool backoff = false) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(count, 1ULL);
    while (load_acquire(count) < target) {
      if (backoff) __nanosleep(32);  // fewer polls of the line the arrivals add to
    }
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

// ---- the second persistent kernel: one L2 round trip to apply a batch, rows prefetched.
// Flags of stream_persistent_v2. The probes leave a stage out to time the others (benchmarks
// only: the centers they leave are wrong).
#define STREAM_BACKOFF 1
#define STREAM_PROBE_NO_ASSIGN 2
#define STREAM_PROBE_NO_APPLY 4
#define STREAM_BLOCK_SUMS 8
// Sums of a batch each thread loads at once in apply_batch_v2, before using any.
#define APPLY_PER_THREAD 8

// IN row p (X[order[p]], or X[p]) of d features into x, zero padded, and its weight into w;
// an invalid row is all zero with weight 0.
template <typename T, int D>
__device__ __forceinline__ void fetch_row(const T* __restrict__ X, const i64* __restrict__ order,
                                          const double* __restrict__ weights, i64 p, bool valid,
                                          int d, bool aligned, T (&x)[D], double& w) {
  const i64 row = valid ? row_at(order, p) : 0;
  w = valid ? weight_at(weights, row) : 0.0;
  load_row<T, D>(X + row * d, d, valid, aligned, x);
}

// The running-mean update of one batch from its buffer (IN: K masses, then K x d sums, read
// through L2), applied by every block to its own copy of the centers and counts, as
// apply_batch does; every load of the block's share is issued before the first is used, so the
// update costs one L2 round trip rather than one per element a thread handles.
template <typename T, int D>
__device__ void apply_batch_v2(const double* buf, double decay, int K, int d, int DS, T* c_s,
                               T* hn_s, double* cnt_s, double* p_s, double* m_s) {
  const double* sums = buf + K;
  const int KD = K * d, step = APPLY_PER_THREAD * blockDim.x;
  double v[APPLY_PER_THREAD];
#pragma unroll
  for (int q = 0; q < APPLY_PER_THREAD; ++q) {
    const int e = threadIdx.x + q * blockDim.x;
    v[q] = e < KD ? __ldcg(sums + e) : 0.0;
  }
  for (int j = threadIdx.x; j < K; j += blockDim.x) {
    const double m = __ldcg(buf + j);
    const double n = __dmul_rn(cnt_s[j], decay);
    p_s[j] = m > 0.0 ? __ddiv_rn(m, __dadd_rn(n, m)) : 0.0;
    m_s[j] = m;
    cnt_s[j] = __dadd_rn(n, m);
  }
  __syncthreads();
  for (int e0 = 0; e0 < KD; e0 += step) {
    if (e0 > 0) {
#pragma unroll
      for (int q = 0; q < APPLY_PER_THREAD; ++q) {
        const int e = e0 + threadIdx.x + q * blockDim.x;
        v[q] = e < KD ? __ldcg(sums + e) : 0.0;
      }
    }
#pragma unroll
    for (int q = 0; q < APPLY_PER_THREAD; ++q) {
      const int e = e0 + threadIdx.x + q * blockDim.x;
      if (e < KD) {
        const int j = e / d;
        if (m_s[j] > 0.0) {
          T* c = c_s + j * DS + (e - j * d);
          *c = (T)mix_center((double)*c, p_s[j], v[q], m_s[j]);
        }
      }
    }
  }
  __syncthreads();
  for (int j = threadIdx.x; j < K; j += blockDim.x) {
    if (m_s[j] > 0.0) hn_s[j] = half_sq_norm_padded<T, D>(c_s + j * DS);
  }
  __syncthreads();
}

// INOUT buf (K masses, then K x d sums) += row x of weight w, nearest center j: lane lig of
// the row's group adds features lig, lig + G, ... (atomics at L2).
template <typename T, int D>
__device__ __forceinline__ void add_row(const T (&x)[D], double w, int j, int K, int d, int G,
                                        int lig, double* buf) {
  double* s = buf + K + (i64)j * d;
#pragma unroll
  for (int k = 0; k < D; ++k) {
    if (k < d && (k & (G - 1)) == lig) atomicAdd(s + k, w * (double)x[k]);
  }
  if (lig == 0) atomicAdd(buf + j, w);
}

// The block's own sums of a batch (STREAM_BLOCK_SUMS): rows add into shared memory (sums in T,
// float32 for float32 data: a block adds few rows, so their partial sums lose nothing the
// float64 sums across blocks would keep; masses in float64, so counts stay exact), then the
// block adds its non-zero entries to the batch's buffer and zeroes its own: one global atomic
// per center and feature a block touched, instead of one per row.
template <typename T>
__device__ void flush_block_sums(T* bs_s, double* bm_s, int K, int d, double* buf) {
  __syncthreads();
  for (int j = threadIdx.x; j < K; j += blockDim.x) {
    const double m = bm_s[j];
    if (m != 0.0) { atomicAdd(buf + j, m); bm_s[j] = 0.0; }
  }
  for (int e = threadIdx.x; e < K * d; e += blockDim.x) {
    const T v = bs_s[e];
    if (v != T(0)) { atomicAdd(buf + K + e, (double)v); bs_s[e] = T(0); }
  }
}

// Assign the rows of one batch (positions [p0, p0 + m), the next batch m_next rows) and add them
// to the batch's buffer (INOUT buf; or to the block's sums, block_sums). With PF, x and w hold
// this lane's first row of the batch on entry (prefetched) and its first row of the next batch
// on exit: every lane loads its next row before it works on the current one.
template <typename T, int D, bool PF>
__device__ __forceinline__ void accumulate_batch_v2(
    const T* __restrict__ X, const i64* __restrict__ order, const double* __restrict__ weights,
    i64 p0, i64 m, i64 m_next, int d, bool al, int flags, const T* c_s, const T* hn_s, int K,
    int DS, int G, bool block_sums, T* bs_s, double* bm_s, double* buf, T (&x)[D], double& w) {
  const int lane = threadIdx.x & 31, lig = lane & (G - 1), rows_per_warp = 32 / G;
  const i64 warp0 = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const i64 start = warp0 * rows_per_warp;  // warp-uniform: the warp's first row in a batch
  const i64 stride = (((i64)gridDim.x * blockDim.x) >> 5) * rows_per_warp;
  const i64 mine = start + lane / G;  // this lane's first row in a batch
  for (i64 base = start; base < m; base += stride) {
    const i64 q = base + lane / G;
    const bool valid = q < m;
    T xc[D];
    double wc;
    if (PF) {
#pragma unroll
      for (int k = 0; k < D; ++k) xc[k] = x[k];
      wc = w;
      if (base + stride < m) {
        fetch_row<T, D>(X, order, weights, p0 + q + stride, q + stride < m, d, al, x, w);
      } else {
        fetch_row<T, D>(X, order, weights, p0 + m + mine, mine < m_next, d, al, x, w);
      }
    } else {
      fetch_row<T, D>(X, order, weights, p0 + q, valid, d, al, xc, wc);
    }
    if (flags & STREAM_PROBE_NO_ASSIGN) continue;
    const int j = nearest_center<T, D>(xc, c_s, hn_s, K, DS, G, lig);
    if (valid && block_sums) {
      T* s = bs_s + j * d;
#pragma unroll
      for (int k = 0; k < D; ++k) {
        if (k < d && (k & (G - 1)) == lig) atomicAdd(s + k, (T)(wc * (double)xc[k]));
      }
      if (lig == 0) atomicAdd(bm_s + j, wc);
    } else if (valid) {
      add_row<T, D>(xc, wc, j, K, d, G, lig, buf);
    }
  }
}

// The streaming pass of stream_persistent, rebuilt around what a batch waits for: the batch's
// buffer holds the masses and sums together and is applied with one L2 round trip
// (apply_batch_v2); with PF, every lane loads its next row (the first of the next batch too)
// before it works on the current one, so the loads of X, order and weights overlap the
// barrier and the update instead of following them. The decay of each batch is read a batch
// ahead. Buffers rotate as in stream_persistent: batch b adds into buffer b % 3, reads
// (b - 1) % 3, zeroes (b + 1) % 3. MAXT and MINB are the launch bounds: at most MAXT threads a
// block, MINB blocks a multiprocessor (which caps the registers a thread).
// IN X, order, weights, decays as stream_persistent's; flags (STREAM_*);
// INOUT centers (K, d), counts (K,); scratch sums (3, K (d + 1)), barrier (zeroed).
// Shared memory: as stream_persistent's, then (STREAM_BLOCK_SUMS, from the next multiple of
// 16 bytes) K doubles and K * d elements of T.
template <typename T, int D, bool PF, int MAXT, int MINB>
__global__ void __launch_bounds__(MAXT, MINB) stream_persistent_v2(
    const T* __restrict__ X, const i64* __restrict__ order, const double* __restrict__ weights,
    i64 n, int d, int aligned, i64 batch_size, const double* __restrict__ decays, T* centers,
    double* counts, int K, int G, int flags, double* sums, unsigned long long* barrier) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int DS = center_stride(D, G);
  double* cnt_s = reinterpret_cast<double*>(smem);
  double* p_s = cnt_s + K;
  double* m_s = p_s + K;
  T* c_s = reinterpret_cast<T*>(smem + ((3 * K * sizeof(double) + 15) / 16) * 16);
  T* hn_s = c_s + K * DS;
  const size_t tail = (reinterpret_cast<unsigned char*>(hn_s + K) - smem + 15) / 16 * 16;
  double* bm_s = reinterpret_cast<double*>(smem + tail);
  T* bs_s = reinterpret_cast<T*>(bm_s + K);
  const bool block_sums = (flags & STREAM_BLOCK_SUMS) != 0;
  if (block_sums) {
    for (int j = threadIdx.x; j < K; j += blockDim.x) bm_s[j] = 0.0;
    for (int e = threadIdx.x; e < K * d; e += blockDim.x) bs_s[e] = T(0);
  }
  for (int j = threadIdx.x; j < K; j += blockDim.x) cnt_s[j] = counts[j];
  load_centers<T, D>(centers, K, d, DS, c_s, hn_s);
  const i64 KD1 = (i64)K * (d + 1);
  const bool backoff = (flags & STREAM_BACKOFF) != 0, al = aligned != 0;
  unsigned long long arrivals = gridDim.x;
  FOR_GRID(e, KD1) __stcg(sums + e, 0.0);
  grid_barrier(barrier, arrivals, backoff);
  const i64 mine = (((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5) * (32 / G) +
                   (threadIdx.x & 31) / G;  // this lane's first row in a batch
  const i64 n_batches = (n + batch_size - 1) / batch_size;
  T x[D];
  double w = 0.0;
  if (PF) fetch_row<T, D>(X, order, weights, mine, mine < min(batch_size, n), d, al, x, w);
  double decay_prev = 1.0;
  for (i64 b = 0; b < n_batches; ++b) {
    const double decay_b = decays ? decays[b] : 1.0;
    if (b > 0 && !(flags & STREAM_PROBE_NO_APPLY)) {
      apply_batch_v2<T, D>(sums + ((b - 1) % 3) * KD1, decay_prev, K, d, DS, c_s, hn_s, cnt_s,
                           p_s, m_s);
    }
    double* next = sums + ((b + 1) % 3) * KD1;
    FOR_GRID(e, KD1) __stcg(next + e, 0.0);
    double* buf = sums + (b % 3) * KD1;
    const i64 p0 = b * batch_size;
    const i64 m = min(batch_size, n - p0);
    const i64 m_next = max((i64)0, min(batch_size, n - p0 - m));
    accumulate_batch_v2<T, D, PF>(X, order, weights, p0, m, m_next, d, al, flags, c_s, hn_s, K,
                                  DS, G, block_sums, bs_s, bm_s, buf, x, w);
    if (block_sums) flush_block_sums<T>(bs_s, bm_s, K, d, buf);
    arrivals += gridDim.x;
    grid_barrier(barrier, arrivals, backoff);
    decay_prev = decay_b;
  }
  if (!(flags & STREAM_PROBE_NO_APPLY)) {
    apply_batch_v2<T, D>(sums + ((n_batches - 1) % 3) * KD1, decay_prev, K, d, DS, c_s, hn_s,
                         cnt_s, p_s, m_s);
  }
  if (blockIdx.x == 0) {
    for (int e = threadIdx.x; e < K * d; e += blockDim.x) {
      const int j = e / d;
      centers[e] = c_s[j * DS + (e - j * d)];
    }
    for (int j = threadIdx.x; j < K; j += blockDim.x) counts[j] = cnt_s[j];
  }
}
"""
