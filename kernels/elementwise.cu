// fastnn: the per-op kernels of the CuPy backend (fastnn/backends/cupy_backend.py).
//
// Each is one launch that would otherwise be several CuPy elementwise calls. All arrays
// are C-contiguous; n is the number of elements; 1-D grid-stride loops.

// Z += b (broadcast over rows of width cols, when has_b); Y = act(Z)
template <typename T>
__device__ void bias_act(const T* b, int has_b, int act, double alpha, T* Z, T* Y,
                         fastnn_i64 n, int cols) {
    for (fastnn_i64 i = fastnn_tid(); i < n; i += fastnn_stride()) {
        T z = Z[i];
        if (has_b) z = z + b[i % cols];
        Z[i] = z;
        Y[i] = fastnn_act<T>(act, z, alpha);
    }
}

// dZ = dY * act'(Z)
template <typename T>
__device__ void act_backward(const T* Z, const T* Y, const T* dY, int act, double alpha,
                             T* dZ, fastnn_i64 n) {
    for (fastnn_i64 i = fastnn_tid(); i < n; i += fastnn_stride())
        dZ[i] = fastnn_act_grad<T>(act, Z[i], Y[i], dY[i], alpha);
}

// stable binary cross-entropy on logits Z (rows x cols) against 0/1 targets t, with row
// weights w (rows) when has_w: loss = w * (max(z,0) - z t + log1p(exp(-|z|))),
// dZ = (sigmoid(z) - t) * w * scale
template <typename T>
__device__ void bce_logits(const T* Z, const T* t, const T* w, int has_w, double scale,
                           T* loss, T* dZ, fastnn_i64 n, int cols) {
    for (fastnn_i64 i = fastnn_tid(); i < n; i += fastnn_stride()) {
        T z = Z[i];
        T y = t[i];
        T l = (z > (T)0 ? z : (T)0) - z * y + log1p(exp(-fabs(z)));
        T d = (T)0.5 * tanh((T)0.5 * z) + (T)0.5 - y;
        if (has_w) {
            T wi = w[i / cols];
            l = l * wi;
            d = d * wi;
        }
        loss[i] = l;
        dZ[i] = d * (T)scale;
    }
}

// the whole Adam/AdamW step over the flat buffers, bias-corrected scalars from the host
template <typename T>
__device__ void adam(const T* g, T* theta, T* m, T* v, double lr_t, double eps_t, double b1,
                     double b2, double l2, double decay, fastnn_i64 n) {
    for (fastnn_i64 i = fastnn_tid(); i < n; i += fastnn_stride())
        fastnn_adam_at<T>(i, g, theta, m, v, lr_t, eps_t, b1, b2, l2, decay);
}

// SGD / momentum / Nesterov over the flat buffers
template <typename T>
__device__ void sgd(const T* g, T* theta, T* vel, double lr, double mom, int nesterov,
                    double l2, fastnn_i64 n) {
    for (fastnn_i64 i = fastnn_tid(); i < n; i += fastnn_stride())
        fastnn_sgd_at<T>(i, g, theta, vel, lr, mom, nesterov, l2);
}

#define FASTNN_ELEMENTWISE(T, SFX)                                                          \
    FASTNN_EXPORT(fastnn_bias_act_##SFX,                                                    \
                  (const T* b, int has_b, int act, double alpha, T* Z, T* Y, fastnn_i64 n,  \
                   int cols),                                                               \
                  bias_act<T>(b, has_b, act, alpha, Z, Y, n, cols))                         \
    FASTNN_EXPORT(fastnn_act_backward_##SFX,                                                \
                  (const T* Z, const T* Y, const T* dY, int act, double alpha, T* dZ,       \
                   fastnn_i64 n),                                                           \
                  act_backward<T>(Z, Y, dY, act, alpha, dZ, n))                             \
    FASTNN_EXPORT(fastnn_bce_logits_##SFX,                                                  \
                  (const T* Z, const T* t, const T* w, int has_w, double scale, T* loss,    \
                   T* dZ, fastnn_i64 n, int cols),                                          \
                  bce_logits<T>(Z, t, w, has_w, scale, loss, dZ, n, cols))                  \
    FASTNN_EXPORT(fastnn_adam_##SFX,                                                        \
                  (const T* g, T* theta, T* m, T* v, double lr_t, double eps_t, double b1,  \
                   double b2, double l2, double decay, fastnn_i64 n),                       \
                  adam<T>(g, theta, m, v, lr_t, eps_t, b1, b2, l2, decay, n))               \
    FASTNN_EXPORT(fastnn_sgd_##SFX,                                                         \
                  (const T* g, T* theta, T* vel, double lr, double mom, int nesterov,       \
                   double l2, fastnn_i64 n),                                                \
                  sgd<T>(g, theta, vel, lr, mom, nesterov, l2, n))

FASTNN_ELEMENTWISE(float, f32)
FASTNN_ELEMENTWISE(double, f64)
