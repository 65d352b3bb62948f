#pragma once
// What the launchers ask about the device on every call, asked of the runtime once: the current
// device's multiprocessors and architecture, and a kernel's dynamic shared memory allowance (a
// driver call each time it is set). Host code for the .cu launchers.
#include <cstddef>

namespace fp4kit::cuda {

struct DeviceFacts {
  int ordinal = 0;
  int multiprocessors = 0;
  int major = 0, minor = 0;
};

// The current device's facts (DeviceError if the runtime cannot say).
const DeviceFacts& current_device_facts();

// Lets `kernel` launch with `bytes` of dynamic shared memory on the current device: sets the
// attribute unless an earlier call already set it at least this high there. `kernel_name` names it
// in the error.
void allow_dynamic_shared_memory(const void* kernel, size_t bytes, const char* kernel_name);

}  // namespace fp4kit::cuda
