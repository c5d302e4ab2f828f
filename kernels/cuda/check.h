// Checks for every CUDA runtime call, cuBLAS call and kernel launch of the CUDA backend.
//
// Contract: PSTRAIN_CUDA_CHECK(call) and PSTRAIN_CUBLAS_CHECK(call) evaluate `call` once and,
// when it fails, throw pstrain::CudaError whose what() names file:line, the call's text and the
// error's name and description. PSTRAIN_CUDA_CHECK_LAUNCH() goes after every kernel launch
// (it reads cudaGetLastError(), which reports bad launch configurations; faults inside a kernel
// surface at the next synchronising call). A CUDA failure is not recoverable input: callers
// let CudaError propagate and the process reports it and exits non-zero. (Setting a backend up
// is the exception: make_cuda_ops() turns it into a Status.)
// Usable from nvcc (C++17) and host C++ translation units.
// Thread-safety: stateless.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace pstrain {

class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace cuda {

[[noreturn]] inline void throw_cuda_error(const char* file, int line, const char* call,
                                          cudaError_t err) {
  throw CudaError(std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " + call +
                  " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

[[noreturn]] inline void throw_cublas_error(const char* file, int line, const char* call,
                                            cublasStatus_t status) {
  throw CudaError(std::string("cuBLAS error at ") + file + ":" + std::to_string(line) + ": " +
                  call + " failed: " + cublasGetStatusName(status) + " (" +
                  cublasGetStatusString(status) + ")");
}

}  // namespace cuda
}  // namespace pstrain

#define PSTRAIN_CUDA_CHECK(call)                                                       \
  do {                                                                                 \
    const cudaError_t pstrain_cuda_err_ = (call);                                      \
    if (pstrain_cuda_err_ != cudaSuccess) {                                            \
      ::pstrain::cuda::throw_cuda_error(__FILE__, __LINE__, #call, pstrain_cuda_err_); \
    }                                                                                  \
  } while (0)

#define PSTRAIN_CUBLAS_CHECK(call)                                                        \
  do {                                                                                    \
    const cublasStatus_t pstrain_cublas_st_ = (call);                                     \
    if (pstrain_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                    \
      ::pstrain::cuda::throw_cublas_error(__FILE__, __LINE__, #call, pstrain_cublas_st_); \
    }                                                                                     \
  } while (0)

// After every kernel launch: throws when the launch itself failed.
#define PSTRAIN_CUDA_CHECK_LAUNCH()                                                                \
  do {                                                                                             \
    const cudaError_t pstrain_launch_err_ = cudaGetLastError();                                    \
    if (pstrain_launch_err_ != cudaSuccess) {                                                      \
      ::pstrain::cuda::throw_cuda_error(__FILE__, __LINE__, "kernel launch", pstrain_launch_err_); \
    }                                                                                              \
  } while (0)
