// PSTRAIN_HD marks small functions that both the host and CUDA device code call
// (element-wise math, index arithmetic). Under nvcc they are __host__ __device__; under a
// plain C++ compiler they are ordinary inline functions, so the CPU tests cover them.
#pragma once

#if defined(__CUDACC__)
#define PSTRAIN_HD __host__ __device__ __forceinline__
#else
#define PSTRAIN_HD inline
#endif
