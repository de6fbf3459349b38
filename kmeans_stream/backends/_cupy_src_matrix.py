"""CUDA sources of the cupy backend's other kernels (compiled by
`kmeans_stream.backends._cupy_kernels`): the matrix-product argmin, the per-batch streaming and
Lloyd updates and transform (GENERIC); the TF32 tensor-core assignment (MMA); the float64
seeding kernels (SEEDING)."""

GENERIC = r"""
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

MMA = r"""
// The large-K assignment on TF32 tensor cores with the argmin fused in (precision "tf32",
// float32 data): no n x K score matrix. A block is 4 warps; a warp owns 16 MT rows, held as
// TF32 A fragments in registers for the whole kernel (MT x KS x 4 registers), and walks the
// centers in chunks of 8 NT staged in shared memory (rounded to TF32, rows padded by 4 words so
// the B fragment loads of a warp hit 32 different banks). mma.sync m16n8k8 fragments, g = lane
// / 4, t = lane % 4: A holds (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4); B (k = t, n = g),
// (k = t + 4, n = g); C (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
__device__ __forceinline__ unsigned to_tf32(float v) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
  return r;
}

__device__ __forceinline__ void mma_tf32(float (&c)[4], const unsigned (&a)[4], unsigned b0,
                                         unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// OUT a: the TF32 A fragments of a warp's 16 MT rows from row0 (zero beyond n and d).
template <int KS, int MT>
__device__ __forceinline__ void load_a_fragments(const float* __restrict__ X, i64 n, int d,
                                                 i64 row0, unsigned (&a)[MT][KS][4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const i64 r0 = row0 + mt * 16 + g, r1 = r0 + 8;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      const int k0 = ks * 8 + t, k1 = k0 + 4;
      a[mt][ks][0] = to_tf32(r0 < n && k0 < d ? __ldg(X + r0 * d + k0) : 0.f);
      a[mt][ks][1] = to_tf32(r1 < n && k0 < d ? __ldg(X + r1 * d + k0) : 0.f);
      a[mt][ks][2] = to_tf32(r0 < n && k1 < d ? __ldg(X + r0 * d + k1) : 0.f);
      a[mt][ks][3] = to_tf32(r1 < n && k1 < d ? __ldg(X + r1 * d + k1) : 0.f);
    }
  }
}

// OUT c_s, h_s: centers [c0, c0 + 8 NT) rounded to TF32 (rows of 8 KS + 4 words) and their hn,
// zero beyond K and d; the whole block calls it.
template <int KS, int NT>
__device__ __forceinline__ void stage_centers(const float* __restrict__ centers,
                                              const float* __restrict__ hn, int K, int d,
                                              int c0, unsigned* c_s, float* h_s) {
  constexpr int DP = KS * 8, STRIDE = DP + 4, BN = NT * 8;
  for (int e = threadIdx.x; e < BN * DP; e += blockDim.x) {
    const int jj = e / DP, k = e - jj * DP, j = c0 + jj;
    c_s[jj * STRIDE + k] = to_tf32(j < K && k < d ? __ldg(centers + (i64)j * d + k) : 0.f);
  }
  for (int jj = threadIdx.x; jj < BN; jj += blockDim.x) h_s[jj] = c0 + jj < K ? hn[c0 + jj] : 0.f;
}

// INOUT best, bj: each lane's best score x.c - hn[c] and center over the staged chunk (its
// columns 2t, 2t + 1 of each 8 centers, for rows g and g + 8 of each 16-row tile), in
// increasing center order, so that the first among equals is kept.
template <int KS, int MT, int NT>
__device__ __forceinline__ void best_in_chunk(const unsigned (&a)[MT][KS][4],
                                              const unsigned* c_s, const float* h_s, int c0,
                                              int K, float (&best)[MT][2], int (&bj)[MT][2]) {
  constexpr int STRIDE = KS * 8 + 4;
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int ng = 0; ng < NT; ng += 4) {
    float acc[MT][4][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[mt][q][r] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const unsigned* bp = c_s + ((ng + q) * 8 + g) * STRIDE + ks * 8 + t;
        const unsigned b0 = bp[0], b1 = bp[4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) mma_tf32(acc[mt][q], a[mt][ks], b0, b1);
      }
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int jl = (ng + q) * 8 + 2 * t, j = c0 + jl;
      const float h0 = h_s[jl], h1 = h_s[jl + 1];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const float s0 = acc[mt][q][2 * half] - h0, s1 = acc[mt][q][2 * half + 1] - h1;
          if (j < K && s0 > best[mt][half]) { best[mt][half] = s0; bj[mt][half] = j; }
          if (j + 1 < K && s1 > best[mt][half]) { best[mt][half] = s1; bj[mt][half] = j + 1; }
        }
      }
    }
  }
}

// The winners of a warp's 16 MT rows from row0 (best, bj: each lane's, reduced here over the
// 4 lanes of a row), their exact squared distances (float32 differences, float64 sums; a warp
// a row, features over the lanes) and OUT labels, sq_dist (or null); returns this lane's share
// of the weighted total.
template <typename L, int MT>
__device__ __forceinline__ double finish_rows(const float* __restrict__ X,
                                              const double* __restrict__ weights, i64 n, int d,
                                              const float* __restrict__ centers, i64 row0,
                                              float (&best)[MT][2], int (&bj)[MT][2],
                                              L* __restrict__ labels,
                                              double* __restrict__ sq_dist) {
  const int lane = threadIdx.x & 31;
  int my_j = 0;
  double my_dd = 0.0;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      group_best(best[mt][half], bj[mt][half], 4);
#pragma unroll
      for (int gg = 0; gg < 8; ++gg) {
        const int r = mt * 16 + half * 8 + gg;
        int j = __shfl_sync(FULL_MASK, bj[mt][half], gg * 4);
        j = j == 0x7fffffff ? 0 : j;  // a row with no finite score (NaN): any center
        const i64 row = row0 + r;
        if (row < n) {
          double dd = 0.0;
          for (int k = lane; k < d; k += 32) {
            const double diff = (double)(X[row * d + k] - centers[(i64)j * d + k]);
            dd = fma(diff, diff, dd);
          }
          dd = group_sum(dd, 32);
          if (lane == r) { my_j = j; my_dd = dd; }
        }
      }
    }
  }
  const i64 row = row0 + lane;
  if (lane >= 16 * MT || row >= n) return 0.0;
  labels[row] = (L)my_j;
  if (sq_dist) sq_dist[row] = my_dd;
  return weight_at(weights, row) * my_dd;
}

// Nearest center of rows [0, n) of X (n, d), d <= 8 KS: the largest TF32 x.c - hn[c] (first
// among equals), then the exact squared distance (float32 differences, float64 sums).
// IN X, weights (n,) or null, centers (K, d), hn (K,) = |c|^2 / 2; OUT labels, sq_dist (or
// null); INOUT total += sum of weight x squared distance. 128 threads a block.
template <typename L, int KS, int MT, int NT>
__global__ void __launch_bounds__(128) assign_mma(
    const float* __restrict__ X, const double* __restrict__ weights, i64 n, int d,
    const float* __restrict__ centers, const float* __restrict__ hn, int K,
    L* __restrict__ labels, double* __restrict__ sq_dist, double* total) {
  constexpr int ROWS = 16 * MT;
  __shared__ __align__(16) unsigned c_s[NT * 8 * (KS * 8 + 4)];
  __shared__ float h_s[NT * 8];
  double local = 0.0;
  for (i64 base = (i64)blockIdx.x * 4 * ROWS; base < n; base += (i64)gridDim.x * 4 * ROWS) {
    const i64 row0 = base + (threadIdx.x >> 5) * ROWS;
    unsigned a[MT][KS][4];
    load_a_fragments<KS, MT>(X, n, d, row0, a);
    float best[MT][2];
    int bj[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      best[mt][0] = best[mt][1] = -infinity<float>();
      bj[mt][0] = bj[mt][1] = 0x7fffffff;
    }
    for (int c0 = 0; c0 < K; c0 += NT * 8) {
      __syncthreads();  // every warp is done with the previous chunk
      stage_centers<KS, NT>(centers, hn, K, d, c0, c_s, h_s);
      __syncthreads();
      best_in_chunk<KS, MT, NT>(a, c_s, h_s, c0, K, best, bj);
    }
    local += finish_rows<L, MT>(X, weights, n, d, centers, row0, best, bj, labels, sq_dist);
  }
  add_block_total(local, total);
}
"""

SEEDING = r"""
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
