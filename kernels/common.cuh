// fastnn: device helpers shared by every kernels/*.cu source.
//
// kernels/cuda.py prepends this text to each source before NVRTC compiles it (no
// #include, so NVRTC needs no header search path). The same text compiles on the host
// under tests/cuda_emu.h, which runs the kernels on the CPU for the test suite.
//
// Every kernel is a template over T (float or double) with extern "C" instantiations
// named fastnn_<kernel>_f32 / _f64 (FASTNN_EXPORT below), so CuPy's RawModule finds them
// by plain names. No fast-math: NaN and Inf propagate as in NumPy.

#ifndef FASTNN_EXPORT
#define FASTNN_EXPORT(name, params, ...) \
    extern "C" __global__ void name params { __VA_ARGS__; }
#endif

#define FASTNN_ACT_LINEAR 0
#define FASTNN_ACT_RELU 1
#define FASTNN_ACT_LEAKY_RELU 2
#define FASTNN_ACT_SIGMOID 3
#define FASTNN_ACT_TANH 4

typedef long long fastnn_i64;

// index of this thread in a 1-D grid, and the grid-stride
__device__ __forceinline__ fastnn_i64 fastnn_tid() {
    return (fastnn_i64)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ fastnn_i64 fastnn_stride() {
    return (fastnn_i64)blockDim.x * gridDim.x;
}

// act(z); constants are cast to T first, as NumPy casts a Python float that meets an
// array of dtype T
template <typename T>
__device__ __forceinline__ T fastnn_act(int act, T z, double alpha) {
    switch (act) {
        case FASTNN_ACT_RELU: return z > (T)0 ? z : (T)0;
        case FASTNN_ACT_LEAKY_RELU: return z > (T)0 ? z : z * (T)alpha;
        case FASTNN_ACT_SIGMOID: return (T)0.5 * tanh((T)0.5 * z) + (T)0.5;
        case FASTNN_ACT_TANH: return tanh(z);
        default: return z;
    }
}

// dY * act'(z), given z, y = act(z) and dy
template <typename T>
__device__ __forceinline__ T fastnn_act_grad(int act, T z, T y, T dy, double alpha) {
    switch (act) {
        case FASTNN_ACT_RELU: return z > (T)0 ? dy : (T)0;
        case FASTNN_ACT_LEAKY_RELU: return z > (T)0 ? dy : dy * (T)alpha;
        case FASTNN_ACT_SIGMOID: return dy * y * ((T)1 - y);
        case FASTNN_ACT_TANH: return dy * ((T)1 - y * y);
        default: return dy;
    }
}

// Adam / AdamW for element i: m, v moments; lr_t, eps_t bias-corrected; l2 coupled decay
// (added to the gradient), decay = 1 - lr * wd for decoupled decay (else 1)
template <typename T>
__device__ __forceinline__ void fastnn_adam_at(fastnn_i64 i, const T* g, T* theta, T* m, T* v,
                                               double lr_t, double eps_t, double b1,
                                               double b2, double l2, double decay) {
    T th = theta[i];
    T gi = g[i];
    if (l2 != 0.0) gi = gi + (T)l2 * th;
    T mi = m[i] * (T)b1 + (T)(1.0 - b1) * gi;
    T vi = v[i] * (T)b2 + (T)(1.0 - b2) * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    if (decay != 1.0) th = th * (T)decay;
    theta[i] = th - (T)lr_t * mi / (sqrt(vi) + (T)eps_t);
}

// SGD with optional (Nesterov) momentum and L2 decay for element i
template <typename T>
__device__ __forceinline__ void fastnn_sgd_at(fastnn_i64 i, const T* g, T* theta, T* vel,
                                              double lr, double mom, int nesterov,
                                              double l2) {
    T th = theta[i];
    T gi = g[i];
    if (l2 != 0.0) gi = gi + (T)l2 * th;
    if (mom != 0.0) {
        T vi = vel[i] * (T)mom - (T)lr * gi;
        vel[i] = vi;
        theta[i] = th + (nesterov ? (T)mom * vi - (T)lr * gi : vi);
    } else {
        theta[i] = th - (T)lr * gi;
    }
}
