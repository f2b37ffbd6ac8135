// Host emulation of the few CUDA features fastnn's kernels use, so that the test suite
// can compile kernels/*.cu with a C++20 compiler and run them on the CPU (see
// tests/cuda_emu.py). Each exported kernel becomes a host function that runs its body
// once per (block, thread) of the grid set by fastnn_emu_config: sequentially in the
// calling thread, or, for kernels that use __syncthreads, on a pool of one OS thread per
// CUDA thread of a block, with a std::barrier for __syncthreads. __shared__ arrays become statics: blocks run one
// after another, so every block sees its own (reused) copy.
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

using std::exp;
using std::fabs;
using std::log;
using std::log1p;
using std::pow;
using std::sqrt;
using std::tanh;

struct fastnn_dim3 {
    unsigned x, y, z;
};

namespace fastnn_emu {
inline thread_local fastnn_dim3 thread_idx{0, 0, 0};
inline thread_local fastnn_dim3 block_idx{0, 0, 0};
inline thread_local bool threaded = false;
inline thread_local std::barrier<>* barrier = nullptr;
inline fastnn_dim3 grid_dim{1, 1, 1};
inline fastnn_dim3 block_dim{1, 1, 1};
inline bool use_threads = false;

inline void sync() {
    if (!threaded) {
        std::fprintf(stderr, "cuda_emu: __syncthreads in a kernel run sequentially\n");
        std::abort();
    }
    barrier->arrive_and_wait();
}

// A persistent pool of one OS thread per CUDA thread of a block (threaded kernels):
// for each block the caller publishes the job, releases the pool, and waits for it.
struct Pool {
    unsigned size;
    std::barrier<> start, done, block;
    const std::function<void(unsigned)>* job = nullptr;
    bool stop = false;
    std::vector<std::thread> threads;
    explicit Pool(unsigned n) : size(n), start(n + 1), done(n + 1), block(n) {
        for (unsigned t = 0; t < n; ++t)
            threads.emplace_back([this, t] {
                for (;;) {
                    start.arrive_and_wait();
                    if (stop) return;
                    (*job)(t);
                    done.arrive_and_wait();
                }
            });
    }
    void run(const std::function<void(unsigned)>& f) {
        job = &f;
        start.arrive_and_wait();
        done.arrive_and_wait();
    }
    ~Pool() {
        stop = true;
        start.arrive_and_wait();
        for (auto& th : threads) th.join();
    }
};

inline Pool& pool(unsigned n) {
    static std::vector<std::unique_ptr<Pool>> pools;
    for (auto& p : pools)
        if (p->size == n) return *p;
    pools.push_back(std::make_unique<Pool>(n));
    return *pools.back();
}

template <class F>
void run(F&& body) {
    const fastnn_dim3 g = grid_dim, b = block_dim;
    const unsigned nt = b.x * b.y * b.z;
    for (unsigned bz = 0; bz < g.z; ++bz)
        for (unsigned by = 0; by < g.y; ++by)
            for (unsigned bx = 0; bx < g.x; ++bx) {
                Pool* p = use_threads ? &pool(nt) : nullptr;
                const std::function<void(unsigned)> one = [&, bx, by, bz](unsigned t) {
                    thread_idx = {t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
                    block_idx = {bx, by, bz};
                    threaded = p != nullptr;
                    barrier = p ? &p->block : nullptr;
                    body();
                };
                if (p == nullptr)
                    for (unsigned t = 0; t < nt; ++t) one(t);
                else
                    p->run(one);
            }
}
}  // namespace fastnn_emu

extern "C" void fastnn_emu_config(unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                  unsigned by, unsigned bz, int threads) {
    fastnn_emu::grid_dim = {gx, gy, gz};
    fastnn_emu::block_dim = {bx, by, bz};
    fastnn_emu::use_threads = threads != 0;
}

#define threadIdx (fastnn_emu::thread_idx)
#define blockIdx (fastnn_emu::block_idx)
#define blockDim (fastnn_emu::block_dim)
#define gridDim (fastnn_emu::grid_dim)
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() fastnn_emu::sync()
#define FASTNN_EXPORT(name, params, ...) \
    extern "C" void name params { fastnn_emu::run([&] { __VA_ARGS__; }); }
