#pragma once
// One exception type for every failure that reaches the user: the message is a complete,
// one-line sentence that names the file and, where there is one, the tensor.
#include <stdexcept>
#include <string>

namespace fp4kit {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad user input (malformed file, missing tensor, wrong shape): exit code 2 at the CLI.
class InputError : public Error {
 public:
  using Error::Error;
};

// A failure of the GPU or its runtime (a CUDA error, device out of memory): exit code 3. The
// message names the kernel or call and the shape it was given.
class DeviceError : public Error {
 public:
  using Error::Error;
};

}  // namespace fp4kit
