// fastnn: the kernels of one training step of a Dense stack, for the CUDA-graph path
// (fastnn/backends/cupy_graph.py). cuBLAS cannot run inside a CuPy stream capture, so
// small and medium products use the tiled GEMM below; everything a step needs that
// changes from step to step (Adam's step count and bias-corrected scalars) lives in
// device memory, so a captured epoch replays unchanged.
//
// Layouts: row-major, leading dimensions in elements. Launch shapes (cupy_graph.py):
// gemm 256 threads, grid (ceil(N/BN), ceil(M/BM)); colsum 256 threads, grid
// ceil(cols/32); the rest 1-D grid-stride loops.

// Loads a 16 x W tile of a matrix into shared memory: tile[kk][x] = element (x0 + x,
// k0 + kk) of an operand whose other index x runs over [0, nx), K over [0, K); zero
// outside. x_contig: x is the contiguous index in memory (src[k * ld + x]), else k is
// (src[x * ld + k]); consecutive threads read consecutive addresses either way.
template <typename T, int W>
__device__ __forceinline__ void fastnn_load_tile(const T* src, int ld, int x_contig, int x0,
                                                 int nx, int k0, int K, T (*tile)[W]) {
    for (int l = threadIdx.x; l < W * 16; l += 256) {
        const int x = x_contig ? l % W : l / 16;
        const int kk = x_contig ? l / W : l % 16;
        const int gx = x0 + x;
        const int gk = k0 + kk;
        T v = (T)0;
        if (gx < nx && gk < K)
            v = x_contig ? src[(fastnn_i64)gk * ld + gx] : src[(fastnn_i64)gx * ld + gk];
        tile[kk][x] = v;
    }
}

// C = op(A) @ op(B) (+ bias[col]) with op(A) (M x K), op(B) (K x N); when has_y also
// Y = act(C). transA: A is stored K x M (op(A) = A^T), transB: B is stored N x K.
// Tiles of BM x BN outputs per block of 16 x 16 threads, each thread (BM/16) x (BN/16)
// outputs strided by 16 (coalesced stores); K in steps of 16 through shared memory.
template <typename T, int BM, int BN>
__device__ void gemm_tile(int M, int N, int K, const T* A, int lda, int transA, const T* B,
                          int ldb, int transB, T* C, int ldc, const T* bias, int has_bias,
                          int act, double alpha, T* Y, int ldy, int has_y) {
    const int BK = 16;
    const int TM = BM / 16;
    const int TN = BN / 16;
    __shared__ T As[BK][BM];
    __shared__ T Bs[BK][BN];
    const int tid = threadIdx.x;
    const int tx = tid % 16;
    const int ty = tid / 16;
    const int row0 = blockIdx.y * BM;
    const int col0 = blockIdx.x * BN;
    T acc[TM][TN];
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] = (T)0;
    for (int k0 = 0; k0 < K; k0 += BK) {
        fastnn_load_tile<T, BM>(A, lda, transA, row0, M, k0, K, As);
        fastnn_load_tile<T, BN>(B, ldb, !transB, col0, N, k0, K, Bs);
        __syncthreads();
        for (int kk = 0; kk < BK; ++kk) {
            T a[TM];
            T b[TN];
            for (int i = 0; i < TM; ++i) a[i] = As[kk][ty + 16 * i];
            for (int j = 0; j < TN; ++j) b[j] = Bs[kk][tx + 16 * j];
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        const int r = row0 + ty + 16 * i;
        if (r >= M) continue;
        for (int j = 0; j < TN; ++j) {
            const int c = col0 + tx + 16 * j;
            if (c >= N) continue;
            T z = acc[i][j];
            if (has_bias) z = z + bias[c];
            C[(fastnn_i64)r * ldc + c] = z;
            if (has_y) Y[(fastnn_i64)r * ldy + c] = fastnn_act<T>(act, z, alpha);
        }
    }
}

// dZ = dY * act'(Z) for a (rows x cols) block, and db = column sums of dZ (when has_db).
// Blocks of 32 columns x 8 row groups; a fixed summation order (deterministic).
// dZ may alias dY.
template <typename T>
__device__ void act_backward_colsum(int rows, int cols, const T* Z, const T* Y, const T* dY,
                                    int act, double alpha, T* dZ, T* db, int has_db) {
    __shared__ T part[8][32];
    const int tx = threadIdx.x % 32;
    const int ty = threadIdx.x / 32;
    const int c = blockIdx.x * 32 + tx;
    T s = (T)0;
    if (c < cols) {
        for (int r = ty; r < rows; r += 8) {
            const fastnn_i64 idx = (fastnn_i64)r * cols + c;
            const T d = fastnn_act_grad<T>(act, Z[idx], Y[idx], dY[idx], alpha);
            dZ[idx] = d;
            s += d;
        }
    }
    part[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < cols && has_db) {
        T t = (T)0;
        for (int q = 0; q < 8; ++q) t += part[q][tx];
        db[c] = t;
    }
}

#define FASTNN_LOSS_BCE 0
#define FASTNN_LOSS_CE 1
#define FASTNN_LOSS_MSE 2

// One thread per row of P (rows x k): the row's weighted loss into lrow[r] and
// d(loss * scale)/dP into dP. BCE and CE take logits (their sigmoid / softmax head is
// fused here); yi holds class indices when sparse, else yf holds targets (rows x k).
template <typename T>
__device__ void loss_rows(int kind, int sparse, int rows, int k, const T* P, const T* yf,
                          const fastnn_i64* yi, const T* w, int has_w, double scale, T* lrow,
                          T* dP) {
    for (fastnn_i64 r = fastnn_tid(); r < rows; r += fastnn_stride()) {
        const T* p = P + r * k;
        T* d = dP + r * k;
        const T wi = has_w ? w[r] : (T)1;
        T l = (T)0;
        if (kind == FASTNN_LOSS_CE) {
            T mx = p[0];
            for (int j = 1; j < k; ++j) mx = p[j] > mx ? p[j] : mx;
            T s = (T)0;
            for (int j = 0; j < k; ++j) s += exp(p[j] - mx);
            const T lse = log(s);
            const fastnn_i64 cls = sparse ? yi[r] : -1;
            for (int j = 0; j < k; ++j) {
                const T logp = (p[j] - mx) - lse;
                const T y = sparse ? (T)(j == cls) : yf[r * k + j];
                l -= y * logp;
                d[j] = (exp(logp) - y) * wi * (T)scale;
            }
        } else {
            for (int j = 0; j < k; ++j) {
                const T z = p[j];
                const T y = yf[r * k + j];
                if (kind == FASTNN_LOSS_BCE) {
                    l += (z > (T)0 ? z : (T)0) - z * y + log1p(exp(-fabs(z)));
                    d[j] = ((T)0.5 * tanh((T)0.5 * z) + (T)0.5 - y) * wi * (T)scale;
                } else {
                    const T diff = z - y;
                    l += diff * diff;
                    d[j] = diff * (T)(2.0 / k) * wi * (T)scale;
                }
            }
            if (kind == FASTNN_LOSS_MSE) l = l / (T)k;
        }
        lrow[r] = l * wi;
    }
}

// inverted dropout from uniforms U: M = (U >= rate) / (1 - rate), Y = X * M
template <typename T>
__device__ void dropout_fwd(fastnn_i64 n, const T* U, double rate, double keep, const T* X,
                            T* M, T* Y) {
    for (fastnn_i64 i = fastnn_tid(); i < n; i += fastnn_stride()) {
        const T m = U[i] >= (T)rate ? (T)keep : (T)0;
        M[i] = m;
        Y[i] = X[i] * m;
    }
}

// out = a * b (dropout backward: dX = dY * M)
template <typename T>
__device__ void mul(fastnn_i64 n, const T* a, const T* b, T* out) {
    for (fastnn_i64 i = fastnn_tid(); i < n; i += fastnn_stride()) out[i] = a[i] * b[i];
}

// Adam with the bias-corrected scalars read from device memory (s[0] = lr_t,
// s[1] = eps_t: this step's pair of the buffer the runner fills once per epoch from the
// optimizer's step_scalars)
template <typename T>
__device__ void adam_dev(const T* g, T* theta, T* m, T* v, const double* s, double b1,
                         double b2, double l2, double decay, fastnn_i64 n) {
    const double lr_t = s[0];
    const double eps_t = s[1];
    for (fastnn_i64 i = fastnn_tid(); i < n; i += fastnn_stride())
        fastnn_adam_at<T>(i, g, theta, m, v, lr_t, eps_t, b1, b2, l2, decay);
}

#define FASTNN_GEMM_PARAMS(T)                                                               \
    (int M, int N, int K, const T* A, int lda, int transA, const T* B, int ldb, int transB, \
     T* C, int ldc, const T* bias, int has_bias, int act, double alpha, T* Y, int ldy,      \
     int has_y)
#define FASTNN_GEMM_ARGS \
    M, N, K, A, lda, transA, B, ldb, transB, C, ldc, bias, has_bias, act, alpha, Y, ldy, has_y

#define FASTNN_TRAIN(T, SFX)                                                                \
    FASTNN_EXPORT(fastnn_gemm64_##SFX, FASTNN_GEMM_PARAMS(T),                               \
                  gemm_tile<T, 64, 64>(FASTNN_GEMM_ARGS))                                   \
    FASTNN_EXPORT(fastnn_gemm32_##SFX, FASTNN_GEMM_PARAMS(T),                               \
                  gemm_tile<T, 32, 32>(FASTNN_GEMM_ARGS))                                   \
    FASTNN_EXPORT(fastnn_act_backward_colsum_##SFX,                                         \
                  (int rows, int cols, const T* Z, const T* Y, const T* dY, int act,        \
                   double alpha, T* dZ, T* db, int has_db),                                 \
                  act_backward_colsum<T>(rows, cols, Z, Y, dY, act, alpha, dZ, db, has_db)) \
    FASTNN_EXPORT(fastnn_loss_rows_##SFX,                                                   \
                  (int kind, int sparse, int rows, int k, const T* P, const T* yf,          \
                   const fastnn_i64* yi, const T* w, int has_w, double scale, T* lrow,      \
                   T* dP),                                                                  \
                  loss_rows<T>(kind, sparse, rows, k, P, yf, yi, w, has_w, scale, lrow, dP)) \
    FASTNN_EXPORT(fastnn_dropout_fwd_##SFX,                                                 \
                  (fastnn_i64 n, const T* U, double rate, double keep, const T* X, T* M,    \
                   T* Y),                                                                   \
                  dropout_fwd<T>(n, U, rate, keep, X, M, Y))                                \
    FASTNN_EXPORT(fastnn_mul_##SFX, (fastnn_i64 n, const T* a, const T* b, T* out),        \
                  mul<T>(n, a, b, out))                                                     \
    FASTNN_EXPORT(fastnn_adam_dev_##SFX,                                                    \
                  (const T* g, T* theta, T* m, T* v, const double* s, double b1, double b2, \
                   double l2, double decay, fastnn_i64 n),                                  \
                  adam_dev<T>(g, theta, m, v, s, b1, b2, l2, decay, n))                    

FASTNN_TRAIN(float, f32)
FASTNN_TRAIN(double, f64)
