#include "engine/logits_file.h"

#include <span>

#include "io/safetensors_writer.h"

namespace fp4kit::engine {

void write_logits(const std::string& path, const std::vector<float>& logits, int64_t batch, int64_t seq, int64_t vocab) {
  io::SafetensorsWriter w(path);
  w.declare("logits", DType::F32, batch == 1 ? std::vector<int64_t>{seq, vocab} : std::vector<int64_t>{batch, seq, vocab});
  w.begin();
  w.write("logits", std::as_bytes(std::span<const float>(logits)));
  w.commit();
}

}  // namespace fp4kit::engine
