#include "io/safetensors_writer.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "io/quote_name.h"
#include "io/safetensors_header.h"

namespace fp4kit::io {

namespace {

std::string json_string(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

SafetensorsWriter::SafetensorsWriter(std::string path) : path_(std::move(path)) {}

void SafetensorsWriter::fail(const std::string& what) const { throw Error(path_ + ": " + what); }

void SafetensorsWriter::set_metadata(std::map<std::string, std::string> metadata) {
  if (file_) fail("set_metadata after begin()");
  metadata_ = std::move(metadata);
}

void SafetensorsWriter::declare(std::string name, DType dtype, std::vector<int64_t> shape) {
  if (file_) fail("tensor " + quote_name(name) + " declared after begin()");
  if (name.empty()) fail("empty tensor name");
  if (name == "__metadata__") fail("'__metadata__' is reserved and cannot name a tensor");
  if (index_of_.contains(name)) fail("tensor " + quote_name(name) + " declared twice");
  const StorageSize size = storage_size(dtype, shape);
  if (!size.problem.empty()) fail("tensor " + quote_name(name) + ": " + size.problem);
  index_of_.emplace(name, layout_.size());
  layout_.push_back(TensorInfo{std::move(name), dtype, std::move(shape), 0, size.nbytes});
}

void SafetensorsWriter::begin() {
  if (file_) fail("begin() called twice");
  std::sort(layout_.begin(), layout_.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  index_of_.clear();
  for (size_t i = 0; i < layout_.size(); ++i) index_of_.emplace(layout_[i].name, i);

  // Contiguous from offset 0 with no gaps: the layout the reference reader insists on.
  uint64_t offset = 0;
  for (TensorInfo& t : layout_) {
    const uint64_t nbytes = t.end;  // declare() stored the size there
    t.begin = offset;
    if (__builtin_add_overflow(offset, nbytes, &t.end)) fail("tensors add up to more than 2^64 bytes");
    offset = t.end;
  }
  data_size_ = offset;

  std::string header = "{";
  try {
    if (!metadata_.empty()) header += "\"__metadata__\":" + nlohmann::json(metadata_).dump();
    for (const TensorInfo& t : layout_) {
      if (header.size() > 1) header += ',';
      header += json_string(t.name) + ":{\"dtype\":\"" + std::string(dtype_name(t.dtype)) + "\",\"shape\":[";
      for (size_t i = 0; i < t.shape.size(); ++i) {
        if (i) header += ',';
        header += std::to_string(t.shape[i]);
      }
      header += "],\"data_offsets\":[" + std::to_string(t.begin) + "," + std::to_string(t.end) + "]}";
    }
  } catch (const nlohmann::json::exception& e) {  // a name or metadata string that is not UTF-8
    fail(std::string("cannot write the header: ") + e.what());
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  if (header.size() > kMaxSafetensorsHeaderBytes)
    fail("header of " + std::to_string(header.size()) + " bytes exceeds the format's limit");

  std::byte length[8];
  for (size_t i = 0; i < 8; ++i) length[i] = static_cast<std::byte>((header.size() >> (8 * i)) & 0xFF);
  file_.emplace(path_);
  file_->write(length);
  file_->write(header);
  data_offset_ = 8 + header.size();
}

const std::string& SafetensorsWriter::temp_path() const {
  if (!file_) fail("temp_path() before begin()");
  return file_->temp_path();
}

const TensorInfo* SafetensorsWriter::tensor_at_position() const {
  for (const TensorInfo& t : layout_)
    if (t.end > written_) return &t;
  return nullptr;
}

void SafetensorsWriter::write(std::string_view name, std::span<const std::byte> bytes) {
  if (!file_ || committed_) fail("tensor " + quote_name(name) + " written before begin() or after commit()");
  const auto it = index_of_.find(std::string(name));
  if (it == index_of_.end()) fail("tensor " + quote_name(name) + " was not declared");
  const TensorInfo& t = layout_[it->second];
  if (bytes.size() != t.nbytes())
    fail("tensor " + quote_name(name) + ": got " + std::to_string(bytes.size()) + " bytes, but shape " +
         shape_string(t.shape) + " x " + std::string(dtype_name(t.dtype)) + " has " + std::to_string(t.nbytes()));
  if (t.nbytes() == 0) return;
  if (t.begin != written_) {
    if (t.begin < written_) fail("tensor " + quote_name(name) + " written twice, or after later tensors");
    fail("tensor " + quote_name(name) + " written out of order: " + quote_name(tensor_at_position()->name) +
         " comes first in layout()");
  }
  file_->write(bytes);
  written_ += bytes.size();
}

void SafetensorsWriter::append(std::span<const std::byte> chunk) {
  if (!file_ || committed_) fail("append before begin() or after commit()");
  if (chunk.size() > data_size_ - written_)
    fail("append of " + std::to_string(chunk.size()) + " bytes runs past the end of the last tensor (" +
         std::to_string(data_size_ - written_) + " bytes left)");
  file_->write(chunk);
  written_ += chunk.size();
}

void SafetensorsWriter::append_hole(uint64_t n) {
  if (!file_ || committed_) fail("append_hole before begin() or after commit()");
  if (n > data_size_ - written_)
    fail("append_hole of " + std::to_string(n) + " bytes runs past the end of the last tensor (" +
         std::to_string(data_size_ - written_) + " bytes left)");
  file_->skip(n);
  written_ += n;
}

void SafetensorsWriter::commit() {
  if (!file_) fail("commit() before begin()");
  if (committed_) fail("committed twice");
  if (written_ < data_size_) {
    const TensorInfo& t = *tensor_at_position();
    fail("tensor " + quote_name(t.name) + " is incomplete: " + std::to_string(written_ - t.begin) + " of " +
         std::to_string(t.nbytes()) + " bytes written");
  }
  file_->commit();
  committed_ = true;
}

}  // namespace fp4kit::io
