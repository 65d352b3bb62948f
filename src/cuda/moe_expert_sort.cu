// CUB's radix sort (stable) for the expert routing.
#include <cub/device/device_radix_sort.cuh>

#include <string>

#include "cuda/check.cuh"
#include "cuda/moe_expert_sort.h"

namespace fp4kit::cuda {

size_t expert_sort_temp_bytes(int64_t items, int end_bit) {
  size_t bytes = 0;
  check(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                        static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                        static_cast<int32_t*>(nullptr), static_cast<int>(items), 0, end_bit),
        [&] { return "cub::DeviceRadixSort::SortPairs size query for " + std::to_string(items) + " expert slots"; });
  return bytes;
}

void sort_slots_by_expert(void* temp, size_t temp_bytes, const uint32_t* keys_in, uint32_t* keys_out,
                          const int32_t* slots_in, int32_t* slots_out, int64_t items, int end_bit,
                          StreamHandle stream) {
  const std::string what = "cub::DeviceRadixSort::SortPairs of " + std::to_string(items) + " expert slots (key bits " +
                           std::to_string(end_bit) + ")";
  size_t needed = 0;
  check(cub::DeviceRadixSort::SortPairs(nullptr, needed, keys_in, keys_out, slots_in, slots_out,
                                        static_cast<int>(items), 0, end_bit, stream),
        what);
  if (needed > temp_bytes)
    throw DeviceError(what + ": needs " + std::to_string(needed) + " bytes of temporary storage, the workspace holds " +
                      std::to_string(temp_bytes));
  check(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, slots_in, slots_out,
                                        static_cast<int>(items), 0, end_bit, stream),
        what);
  check_launch("cub::DeviceRadixSort::SortPairs", [&] { return "items=" + std::to_string(items); });
}

}  // namespace fp4kit::cuda
