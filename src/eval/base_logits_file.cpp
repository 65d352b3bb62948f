#include "eval/base_logits_file.h"

#include <algorithm>
#include <cstring>
#include <span>

#include "base/error.h"
#include "formats/f16.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"

namespace fp4kit::eval {

namespace {
constexpr const char* kFormat = "fp4kit-base-logits";
constexpr const char* kVersion = "1";
}  // namespace

void write_base_logits(const std::string& path, const BaseLogits& b, BaseLogitsDType dtype) {
  io::SafetensorsWriter w(path);
  w.set_metadata({{"format", kFormat}, {"version", kVersion}, {"model_fingerprint", b.model_fingerprint}});
  w.declare("input_ids", DType::I64, {b.batch, b.seq});
  w.declare("logits", dtype == BaseLogitsDType::F16 ? DType::F16 : DType::F32, {b.batch, b.seq, b.vocab});
  w.begin();
  w.write("input_ids", std::as_bytes(std::span<const int64_t>(b.ids)));
  if (dtype == BaseLogitsDType::F32) {
    w.write("logits", std::as_bytes(std::span<const float>(b.logits)));
  } else {
    std::vector<F16> row(static_cast<size_t>(b.vocab));
    for (size_t r = 0; r < b.logits.size() / row.size(); ++r) {
      const float* x = &b.logits[r * row.size()];
      const float mx = *std::max_element(x, x + row.size());
      for (size_t i = 0; i < row.size(); ++i) row[i] = F16::from_float(x[i] - mx);
      w.append(std::as_bytes(std::span<const F16>(row)));
    }
  }
  w.commit();
}

BaseLogits read_base_logits(const std::string& path, const std::string& expected_fingerprint,
                            const std::vector<int64_t>& ids, int64_t batch, int64_t vocab) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  const auto& meta = file.header().metadata;
  const auto get = [&](const char* key) -> std::string {
    const auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  if (get("format") != kFormat)
    throw InputError(path + ": not a base-logits file of fp4kit eval (no __metadata__ format \"" + kFormat + "\")");
  if (get("version") != kVersion)
    throw InputError(path + ": base-logits format version \"" + get("version") + "\", this fp4kit reads " + kVersion);
  if (get("model_fingerprint") != expected_fingerprint)
    throw InputError(path + ": saved from another base model (fingerprint " + get("model_fingerprint") +
                     ", --base has " + expected_fingerprint + "); save them again with --save-base-logits");
  BaseLogits b;
  b.model_fingerprint = expected_fingerprint;
  const io::TensorInfo& ti = file.at("input_ids");
  const io::TensorInfo& tl = file.at("logits");
  if (ti.dtype != DType::I64 || ti.shape.size() != 2 || (tl.dtype != DType::F32 && tl.dtype != DType::F16) || tl.shape.size() != 3 ||
      tl.shape[0] != ti.shape[0] || tl.shape[1] != ti.shape[1])
    throw InputError(path + ": expected input_ids I64 [batch, seq] and logits F32 [batch, seq, vocab]");
  b.batch = ti.shape[0], b.seq = ti.shape[1], b.vocab = tl.shape[2];
  if (b.vocab != vocab)
    throw InputError(path + ": logits over a vocabulary of " + std::to_string(b.vocab) + " tokens, the models have " +
                     std::to_string(vocab));
  const int64_t seq = batch > 0 ? static_cast<int64_t>(ids.size()) / batch : 0;
  if (b.batch != batch || b.seq != seq)
    throw InputError(path + ": saved for " + std::to_string(b.batch) + " sequences x " + std::to_string(b.seq) +
                     " tokens, this run has " + std::to_string(batch) + " x " + std::to_string(seq) +
                     " (other --data, --samples or --seq-len)");
  b.ids.resize(ids.size());
  file.read(ti, std::as_writable_bytes(std::span<int64_t>(b.ids)));
  for (size_t i = 0; i < ids.size(); ++i)
    if (b.ids[i] != ids[i])
      throw InputError(path + ": saved for other token ids: sequence " + std::to_string(static_cast<int64_t>(i) / seq) +
                       ", position " + std::to_string(static_cast<int64_t>(i) % seq) + " holds id " +
                       std::to_string(b.ids[i]) + ", this run's data has " + std::to_string(ids[i]));
  b.logits.resize(static_cast<size_t>(tl.numel()));
  if (tl.dtype == DType::F32) {
    file.read(tl, std::as_writable_bytes(std::span<float>(b.logits)));
  } else {
    std::vector<F16> stored(b.logits.size());
    file.read(tl, std::as_writable_bytes(std::span<F16>(stored)));
    for (size_t i = 0; i < stored.size(); ++i) b.logits[i] = stored[i].to_float();
  }
  return b;
}

}  // namespace fp4kit::eval
