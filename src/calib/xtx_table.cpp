#include "calib/xtx_table.h"

#include <cstring>

#include "base/error.h"
#include "base/parallel.h"
#include "io/quote_name.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

namespace {

constexpr int64_t kBlock = 16;
constexpr size_t kBlockValues = 256;

}  // namespace

void XtxTable::observe(const std::string& module, const float* x, int64_t rows, int64_t cols, const float* row_weights,
                       unsigned threads) {
  if (cols % kBlock != 0) throw Error(module + ": " + std::to_string(cols) + " input channels, not a multiple of 16");
  XtxBlocks& m = modules_[module];
  if (m.sums.empty()) {
    m.cols = cols;
    m.sums.assign(static_cast<size_t>(cols / kBlock) * kBlockValues, 0.0);
  } else if (m.cols != cols) {
    throw Error(module + ": input width changed from " + std::to_string(m.cols) + " to " + std::to_string(cols));
  }
  m.rows += rows;
  parallel_for(static_cast<size_t>(cols / kBlock), 8, threads, [&](size_t first, size_t last) {
    for (size_t j = first; j < last; ++j) {
      double* s = m.sums.data() + j * kBlockValues;
      for (int64_t r = 0; r < rows; ++r) {
        const float* v = x + r * cols + static_cast<int64_t>(j) * kBlock;
        const double w = row_weights ? static_cast<double>(row_weights[r]) : 1.0;
        double d[kBlock];
        for (int i = 0; i < kBlock; ++i) d[i] = w * static_cast<double>(v[i]);
        // The upper triangle only; mirrored when saved.
        for (int a = 0; a < kBlock; ++a)
          for (int b = a; b < kBlock; ++b) s[a * kBlock + b] += d[a] * d[b];
      }
    }
  });
}

void XtxTable::add(const std::string& module, const XtxBlocks& blocks) {
  auto [it, fresh] = modules_.try_emplace(module, blocks);
  if (fresh) return;
  if (it->second.cols != blocks.cols) throw Error(module + ": XᵀX blocks of two input widths");
  it->second.rows += blocks.rows;
  for (size_t i = 0; i < blocks.sums.size(); ++i) it->second.sums[i] += blocks.sums[i];
}

void XtxTable::merge(const XtxTable& other) {
  for (const auto& [module, blocks] : other.modules_) add(module, blocks);
}

void XtxTable::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  io::SafetensorsWriter writer(path);
  writer.set_metadata(metadata);
  for (const auto& [module, m] : modules_) {
    writer.declare(module + std::string(kXtxBlocksSuffix), DType::F32, {m.cols / kBlock, kBlock, kBlock});
    writer.declare(module + std::string(kXtxRowsSuffix), DType::I64, {});
  }
  writer.begin();
  for (const io::TensorInfo& t : writer.layout()) {
    const bool rows = t.name.ends_with(kXtxRowsSuffix);
    const std::string_view module =
        std::string_view(t.name).substr(0, t.name.size() - (rows ? kXtxRowsSuffix : kXtxBlocksSuffix).size());
    const XtxBlocks& m = modules_.find(module)->second;
    if (rows) {
      writer.write(t.name, std::as_bytes(std::span(&m.rows, 1)));
      continue;
    }
    std::vector<float> out(m.sums.size());
    for (size_t j = 0; j < m.sums.size() / kBlockValues; ++j)
      for (int a = 0; a < kBlock; ++a)
        for (int b = 0; b < kBlock; ++b) {
          const int lo = a < b ? a : b, hi = a < b ? b : a;
          out[j * kBlockValues + static_cast<size_t>(a * kBlock + b)] =
              static_cast<float>(m.sums[j * kBlockValues + static_cast<size_t>(lo * kBlock + hi)]);
        }
    writer.write(t.name, std::as_bytes(std::span(out)));
  }
  writer.commit();
}

XtxTable XtxTable::load(const std::string& path) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  XtxTable table;
  for (const io::TensorInfo& t : file.tensors()) {
    const std::string where = path + ": tensor " + io::quote_name(t.name);
    if (t.name.ends_with(kXtxRowsSuffix)) {
      if (t.dtype != DType::I64 || !t.shape.empty()) throw InputError(where + ": is not an I64 0-d row count");
      int64_t rows = 0;
      file.read(t, std::as_writable_bytes(std::span(&rows, 1)));
      table.modules_[t.name.substr(0, t.name.size() - kXtxRowsSuffix.size())].rows = rows;
      continue;
    }
    if (!t.name.ends_with(kXtxBlocksSuffix))
      throw InputError(where + ": is neither '<module>" + std::string(kXtxBlocksSuffix) + "' nor '<module>" +
                       std::string(kXtxRowsSuffix) + "'");
    if (t.dtype != DType::F32 || t.shape.size() != 3 || t.shape[1] != kBlock || t.shape[2] != kBlock || t.shape[0] < 1)
      throw InputError(where + ": is " + std::string(dtype_name(t.dtype)) + " " + io::shape_string(t.shape) +
                       ", not F32 [K/16, 16, 16]");
    std::vector<float> values(static_cast<size_t>(t.shape[0]) * kBlockValues);
    file.read(t, std::as_writable_bytes(std::span(values)));
    XtxBlocks& m = table.modules_[t.name.substr(0, t.name.size() - kXtxBlocksSuffix.size())];
    m.cols = t.shape[0] * kBlock;
    m.sums.assign(values.begin(), values.end());
  }
  for (const auto& [module, m] : table.modules_)
    if (m.sums.empty())
      throw InputError(path + ": tensor " + io::quote_name(module + std::string(kXtxRowsSuffix)) + " has no " +
                       io::quote_name(module + std::string(kXtxBlocksSuffix)) + " beside it");
  return table;
}

}  // namespace fp4kit
