// The CPU-only build: no CUDA compiler was found when fp4kit was configured.
#include "base/error.h"
#include "cuda/pinned_host_allocator.h"

namespace fp4kit::cuda {

io::HostAllocator pinned_host_allocator() {
  throw InputError("--device cuda: this fp4kit was built without CUDA (no nvcc at configure time)");
}

}  // namespace fp4kit::cuda
