/* Device selection and checks, error messages, allocation, and the host-side
 * helpers of the CUDA backend. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/quant_decode.cuh"

#ifndef GW_CUDA_ARCHS
#define GW_CUDA_ARCHS "unknown"
#endif

static thread_local char g_err[512];

extern "C" const char *gw_cuda_last_error(void) { return g_err; }

int gw_cuda_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return status;
}

extern "C" const char *gw_cuda_build_archs(void) { return GW_CUDA_ARCHS; }

/* A kernel that exists only so that cudaFuncGetAttributes can tell whether
 * this build has code the device can run. */
__global__ void gw_probe_kernel(int *p) {
    if (p) *p = 1;
}

static int fail_err(int status, char *err, size_t errlen) {
    if (err && errlen) snprintf(err, errlen, "%s", g_err);
    return status;
}

extern "C" int gw_cuda_device_check(int device, size_t need_bytes, char *err, size_t errlen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        gw_cuda_fail(GW_CUDA_ERR_NO_DEVICE, "no CUDA device: %s",
                     e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
        cudaGetLastError(); /* clear it for later calls */
        return fail_err(GW_CUDA_ERR_NO_DEVICE, err, errlen);
    }
    if (device < 0 || device >= n) {
        gw_cuda_fail(GW_CUDA_ERR_NO_DEVICE, "CUDA device %d does not exist (%d found)", device, n);
        return fail_err(GW_CUDA_ERR_NO_DEVICE, err, errlen);
    }
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess) {
        gw_cuda_fail(GW_CUDA_ERR_NO_DEVICE, "CUDA device %d: %s", device, cudaGetErrorString(e));
        return fail_err(GW_CUDA_ERR_NO_DEVICE, err, errlen);
    }
    if (prop.major < 8) {
        gw_cuda_fail(GW_CUDA_ERR_ARCH,
                     "GPU %d (%s) has compute capability %d.%d; godwit's CUDA kernels need 8.0 or newer "
                     "(bf16 tensor cores) and this build has code for sm_%s",
                     device, prop.name, prop.major, prop.minor, GW_CUDA_ARCHS);
        return fail_err(GW_CUDA_ERR_ARCH, err, errlen);
    }
    if ((e = cudaSetDevice(device)) != cudaSuccess) {
        gw_cuda_fail(GW_CUDA_ERR_NO_DEVICE, "cudaSetDevice(%d): %s", device, cudaGetErrorString(e));
        return fail_err(GW_CUDA_ERR_NO_DEVICE, err, errlen);
    }
    cudaFuncAttributes fa;
    if ((e = cudaFuncGetAttributes(&fa, gw_probe_kernel)) != cudaSuccess) {
        cudaGetLastError();
        gw_cuda_fail(GW_CUDA_ERR_ARCH,
                     "GPU %d (%s, compute capability %d.%d) cannot run this build's code (built for sm_%s: "
                     "%s); rebuild with -DCMAKE_CUDA_ARCHITECTURES=%d%d",
                     device, prop.name, prop.major, prop.minor, GW_CUDA_ARCHS, cudaGetErrorString(e), prop.major,
                     prop.minor);
        return fail_err(GW_CUDA_ERR_ARCH, err, errlen);
    }
    size_t free_b = 0, total_b = 0;
    if ((e = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess) {
        gw_cuda_fail(GW_CUDA_ERR_NO_DEVICE, "cudaMemGetInfo on GPU %d: %s", device, cudaGetErrorString(e));
        return fail_err(GW_CUDA_ERR_NO_DEVICE, err, errlen);
    }
    if (need_bytes > free_b) {
        gw_cuda_fail(GW_CUDA_ERR_NO_MEMORY,
                     "not enough GPU memory on GPU %d (%s): need %.1f MiB, %.1f MiB free of %.1f MiB", device,
                     prop.name, need_bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
        return fail_err(GW_CUDA_ERR_NO_MEMORY, err, errlen);
    }
    g_err[0] = 0;
    return GW_CUDA_OK;
}

extern "C" int gw_cuda_device_describe(int device, char *buf, size_t buflen) {
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        cudaGetLastError();
        snprintf(buf, buflen, "no device %d", device);
        return gw_cuda_fail(GW_CUDA_ERR_NO_DEVICE, "CUDA device %d: %s", device, cudaGetErrorString(e));
    }
    size_t free_b = 0, total_b = 0;
    int cur = 0;
    cudaGetDevice(&cur);
    if (cur == device) cudaMemGetInfo(&free_b, &total_b);
    snprintf(buf, buflen, "%s, compute capability %d.%d, %d SMs, %.1f GiB (%.1f free), L2 %d MiB", prop.name,
             prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0,
             free_b / 1073741824.0, prop.l2CacheSize >> 20);
    return GW_CUDA_OK;
}

extern "C" int gw_cuda_malloc(void **p, size_t bytes) {
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        *p = NULL;
        return gw_cuda_fail(e == cudaErrorMemoryAllocation ? GW_CUDA_ERR_NO_MEMORY : GW_CUDA_ERR_CUDA,
                            "cudaMalloc of %.1f MiB failed: %s (%.1f MiB free of %.1f MiB)", bytes / 1048576.0,
                            cudaGetErrorString(e), free_b / 1048576.0, total_b / 1048576.0);
    }
    return GW_CUDA_OK;
}

extern "C" int gw_cuda_free(void *p) {
    cudaError_t e = cudaFree(p);
    if (e != cudaSuccess) return gw_cuda_fail(GW_CUDA_ERR_CUDA, "cudaFree: %s", cudaGetErrorString(e));
    return GW_CUDA_OK;
}

extern "C" int gw_cuda_sync(void *stream) {
    cudaError_t e = cudaStreamSynchronize(GW_STREAM(stream));
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess)
        return gw_cuda_fail(GW_CUDA_ERR_CUDA, "GPU work failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return GW_CUDA_OK;
}

extern "C" void gw_cuda_rope_inv_freq(float theta, int rope_dim, float scale, const float *factors,
                                      float *inv_freq) {
    /* As forward.c (and Hugging Face): base^(-2i/d) in float. */
    for (int i = 0; i < rope_dim / 2; i++) {
        float f = 1.0f / powf(theta, (float)(2 * i) / (float)rope_dim);
        if (factors) f /= factors[i];
        inv_freq[i] = f / scale;
    }
}

extern "C" int gw_cuda_type_supported(uint32_t type) { return gwq::supported(type) ? 1 : 0; }

extern "C" size_t gw_cuda_row_bytes(uint32_t type, int64_t n) {
    if (!gwq::supported(type) || n < 0 || n % gwq::block_elems(type)) return 0;
    return (size_t)(n / gwq::block_elems(type)) * (size_t)gwq::block_bytes(type);
}

/* ---- streams, copies, pinned memory, graphs ---- */

static int cuda_status(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return GW_CUDA_OK;
    cudaGetLastError();
    return gw_cuda_fail(e == cudaErrorMemoryAllocation ? GW_CUDA_ERR_NO_MEMORY : GW_CUDA_ERR_CUDA, "%s: %s (%s)",
                        what, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" int gw_cuda_stream_new(void **stream) {
    cudaStream_t s = NULL;
    int rc = cuda_status(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    *stream = rc ? NULL : (void *)s;
    return rc;
}

extern "C" void gw_cuda_stream_free(void *stream) {
    if (stream) cudaStreamDestroy(GW_STREAM(stream));
}

extern "C" int gw_cuda_memcpy(void *dst, const void *src, size_t bytes, int kind, void *stream) {
    if (bytes == 0) return GW_CUDA_OK;
    const cudaMemcpyKind k = kind == GW_CUDA_H2D ? cudaMemcpyHostToDevice
                             : kind == GW_CUDA_D2H ? cudaMemcpyDeviceToHost
                                                   : cudaMemcpyDeviceToDevice;
    return cuda_status(cudaMemcpyAsync(dst, src, bytes, k, GW_STREAM(stream)), "cudaMemcpyAsync");
}

extern "C" int gw_cuda_memset(void *dst, int value, size_t bytes, void *stream) {
    return cuda_status(cudaMemsetAsync(dst, value, bytes, GW_STREAM(stream)), "cudaMemsetAsync");
}

extern "C" int gw_cuda_host_alloc(void **p, size_t bytes) {
    *p = NULL;
    int rc = cuda_status(cudaMallocHost(p, bytes ? bytes : 1), "cudaMallocHost");
    if (rc) *p = NULL;
    return rc;
}

extern "C" void gw_cuda_host_free(void *p) {
    if (p) cudaFreeHost(p);
}

extern "C" int gw_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    return cuda_status(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

extern "C" int gw_cuda_graph_begin(void *stream) {
    return cuda_status(cudaStreamBeginCapture(GW_STREAM(stream), cudaStreamCaptureModeThreadLocal),
                       "cudaStreamBeginCapture");
}

extern "C" int gw_cuda_graph_end(void *stream, void **graph_exec) {
    cudaGraph_t g = NULL;
    *graph_exec = NULL;
    int rc = cuda_status(cudaStreamEndCapture(GW_STREAM(stream), &g), "cudaStreamEndCapture");
    if (rc) return rc;
    cudaGraphExec_t ex = NULL;
    rc = cuda_status(cudaGraphInstantiate(&ex, g, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(g);
    if (!rc) *graph_exec = (void *)ex;
    return rc;
}

extern "C" int gw_cuda_graph_launch(void *graph_exec, void *stream) {
    return cuda_status(cudaGraphLaunch((cudaGraphExec_t)graph_exec, GW_STREAM(stream)), "cudaGraphLaunch");
}

extern "C" void gw_cuda_graph_free(void *graph_exec) {
    if (graph_exec) cudaGraphExecDestroy((cudaGraphExec_t)graph_exec);
}
