#include "base/error.h"
#include "cuda/device.h"

namespace fp4kit::cuda {

DeviceInfo require_device(int ordinal) {
  std::string why;
  auto info = probe(ordinal, &why);
  if (!info) throw InputError("--device cuda: " + why);
  return *info;
}

Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda") return Device::Cuda;
  throw InputError("--device: expected cpu or cuda, got '" + std::string(name) + "'");
}

std::string_view device_name(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

}  // namespace fp4kit::cuda
