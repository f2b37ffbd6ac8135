"""fastnn's hand-written kernels, installed as ``fastnn.kernels``.

``cpu`` holds Numba ``@njit`` kernels (imported lazily by the Numba backend); ``cuda``
holds CUDA C sources loaded through CuPy by the GPU backend. Nothing here is imported by
``import fastnn``.
"""
