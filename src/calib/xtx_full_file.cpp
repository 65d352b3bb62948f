#include "calib/xtx_full_file.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/quote_name.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

namespace {

constexpr const char* kRowsSuffix = ".rows";
constexpr size_t kCopyChunk = size_t{8} << 20;

std::string metadata_field(const io::SafetensorsFile& f, const std::string& key) {
  const auto it = f.header().metadata.find(key);
  return it == f.header().metadata.end() ? "" : it->second;
}

}  // namespace

std::string xtx_full_layer_file(int64_t layer) {
  char name[40];
  std::snprintf(name, sizeof name, "layer-%03lld.safetensors", static_cast<long long>(layer));
  return name;
}

XtxFullLayerWriter::XtxFullLayerWriter(std::string path)
    : path_(std::move(path)), spill_path_(path_ + ".spill"), spill_(spill_path_, std::ios::binary | std::ios::trunc) {
  if (!spill_) throw Error(spill_path_ + ": cannot create");
}

XtxFullLayerWriter::~XtxFullLayerWriter() {
  spill_.close();
  std::error_code ec;
  std::filesystem::remove(spill_path_, ec);
}

void XtxFullLayerWriter::add(const std::string& module, int64_t groups, int64_t k, int64_t rows, const float* values) {
  if (!modules_.try_emplace(module, Entry{groups, k, rows, spill_bytes_}).second)
    throw Error(module + ": its input was seen twice in one layer");
  const uint64_t bytes = static_cast<uint64_t>(groups * k * k) * sizeof(float);
  spill_.write(reinterpret_cast<const char*>(values), static_cast<std::streamsize>(bytes));
  if (!spill_) throw Error(spill_path_ + ": write failed (disk full?)");
  spill_bytes_ += bytes;
}

void XtxFullLayerWriter::finish(const std::map<std::string, std::string>& metadata) {
  spill_.close();
  if (!spill_) throw Error(spill_path_ + ": write failed (disk full?)");
  io::SafetensorsWriter writer(path_);
  writer.set_metadata(metadata);
  for (const auto& [module, e] : modules_) {
    writer.declare(module + std::string(kXtxFullSuffix), DType::F32,
                   e.groups == 1 ? std::vector<int64_t>{e.k, e.k} : std::vector<int64_t>{e.groups, e.k, e.k});
    writer.declare(module + kRowsSuffix, DType::I64, {});
  }
  writer.begin();
  std::ifstream in(spill_path_, std::ios::binary);
  std::vector<char> chunk(kCopyChunk);
  for (const io::TensorInfo& t : writer.layout()) {
    const bool rows = t.name.ends_with(kRowsSuffix);
    const std::string module =
        t.name.substr(0, t.name.size() - (rows ? std::string_view(kRowsSuffix) : kXtxFullSuffix).size());
    const Entry& e = modules_.at(module);
    if (rows) {
      writer.write(t.name, std::as_bytes(std::span(&e.rows, 1)));
      continue;
    }
    in.seekg(static_cast<std::streamoff>(e.offset));
    for (uint64_t left = t.nbytes(); left > 0;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, chunk.size()));
      if (!in.read(chunk.data(), static_cast<std::streamsize>(n))) throw Error(spill_path_ + ": read failed");
      writer.append(std::as_bytes(std::span(chunk.data(), n)));
      left -= n;
    }
  }
  writer.commit();
}

std::vector<std::string> xtx_full_modules(const io::SafetensorsFile& layer_file) {
  std::vector<std::string> out;
  for (const io::TensorInfo& t : layer_file.tensors())
    if (t.name.ends_with(kXtxFullSuffix)) out.push_back(t.name.substr(0, t.name.size() - kXtxFullSuffix.size()));
  return out;
}

XtxFullStatistics XtxFullStatistics::open(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string index = (fs::path(dir) / std::string(kXtxFullIndex)).string();
  if (!fs::is_directory(dir) || !fs::is_regular_file(index))
    throw InputError(dir + ": not a full XᵀX statistics directory (no " + std::string(kXtxFullIndex) +
                     "); make one with calibrate --hessian DIR --hessian-mode full");
  std::ifstream in(index, std::ios::binary);
  const nlohmann::json j = nlohmann::json::parse(std::istreambuf_iterator<char>(in), {}, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != kXtxFullFormat || !j.contains("modules") ||
      !j["modules"].is_object())
    throw InputError(index + ": not a full XᵀX statistics index (format is not '" + std::string(kXtxFullFormat) + "')");
  XtxFullStatistics s;
  s.dir_ = dir;
  s.fingerprint_ = j.value("fingerprint", "");
  s.model_ = j.value("model", "");
  for (const auto& [module, file] : j["modules"].items()) {
    if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
      throw InputError(index + ": module " + io::quote_name(module) + " has no layer file name");
    s.files_[module] = file.get<std::string>();
  }
  // Every layer file opened (headers only) and checked before anything reads a matrix.
  for (const auto& [module, name] : s.files_) {
    auto& file = s.open_[name];
    if (file) continue;
    const std::string path = (fs::path(dir) / name).string();
    if (!fs::is_regular_file(path)) throw InputError(path + ": missing (listed in " + index + ")");
    file = std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::open(path));
    if (metadata_field(*file, "format") != kXtxFullFormat || metadata_field(*file, "fingerprint") != s.fingerprint_)
      throw InputError(path + ": a layer file of another calibration run than " + index);
  }
  return s;
}

std::optional<int64_t> XtxFullStatistics::rows(const std::string& module) const {
  const auto f = files_.find(module);
  if (f == files_.end()) return std::nullopt;
  const io::SafetensorsFile& file = *open_.at(f->second);
  const io::TensorInfo* t = file.find(module + ".rows");
  if (!t || t->dtype != DType::I64 || t->numel() != 1) return std::nullopt;
  int64_t rows = 0;
  file.read(*t, std::as_writable_bytes(std::span(&rows, 1)));
  return rows;
}

std::vector<double> XtxFullStatistics::read(const std::string& module, const std::string& weight, int64_t rows,
                                            int64_t cols, int64_t& groups) const {
  const auto f = files_.find(module);
  const std::string name = module + std::string(kXtxFullSuffix);
  if (f == files_.end())
    throw InputError(dir_ + ": no XᵀX of " + io::quote_name(module) + " for weight " + io::quote_name(weight) +
                     ": --gptq needs the full XᵀX of every weight it requantizes (--gptq-missing rtn rounds such "
                     "weights without compensation)");
  const io::SafetensorsFile& file = *open_.at(f->second);
  const std::string& path = file.path();
  const io::TensorInfo* t = file.find(name);
  const auto& s = t ? t->shape : std::vector<int64_t>{};
  groups = s.size() == 2 ? 1 : s.size() == 3 ? s[0] : 0;
  if (!t || t->dtype != DType::F32 || groups < 1 || rows % groups != 0 || s[s.size() - 1] != cols ||
      s[s.size() - 2] != cols)
    throw InputError(path + ": tensor " + io::quote_name(name) +
                     (t ? " is " + std::string(dtype_name(t->dtype)) + " " + io::shape_string(s) : std::string(" is missing")) +
                     ", not F32 [" + std::to_string(cols) + ", " + std::to_string(cols) + "] (or [G, " +
                     std::to_string(cols) + ", " + std::to_string(cols) + "], G dividing the " + std::to_string(rows) +
                     " rows) for weight " + io::quote_name(weight));
  std::vector<float> values(static_cast<size_t>(t->numel()));
  file.read(*t, std::as_writable_bytes(std::span(values)));
  return std::vector<double>(values.begin(), values.end());
}

}  // namespace fp4kit
