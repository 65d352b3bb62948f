#pragma once
// Thread-block clusters (compute capability 9.0 and later), for the kernels that split K over the
// blocks of a cluster and add their partial sums through distributed shared memory. Launchers use
// clusters only on 9.0 and later; elsewhere these trap.
#include <cooperative_groups.h>

namespace fp4kit::cuda {

__device__ __forceinline__ void cluster_sync_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cooperative_groups::this_cluster().sync();
#else
  __trap();
#endif
}

// `p` (this block's shared memory) as block `rank` of the cluster holds it.
__device__ __forceinline__ const float* cluster_peer(const float* p, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().map_shared_rank(const_cast<float*>(p), rank);
#else
  __trap();
  return p;
#endif
}

}  // namespace fp4kit::cuda
