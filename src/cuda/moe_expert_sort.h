#pragma once
// The stable sort behind the mixture-of-experts routing: (expert key, slot) pairs ordered by key, so
// that the slots of one expert stay in increasing slot (= token) order. Keys use bits [0, end_bit).
// Plain C++ header: no CUDA headers.
#include <cstddef>
#include <cstdint>

#include "cuda/runtime.h"

namespace fp4kit::cuda {

// Temporary device bytes the sort of `items` pairs needs.
size_t expert_sort_temp_bytes(int64_t items, int end_bit);

// keys_out/slots_out = the pairs sorted by key; `temp` holds at least expert_sort_temp_bytes(items).
void sort_slots_by_expert(void* temp, size_t temp_bytes, const uint32_t* keys_in, uint32_t* keys_out,
                          const int32_t* slots_in, int32_t* slots_out, int64_t items, int end_bit,
                          StreamHandle stream);

}  // namespace fp4kit::cuda
