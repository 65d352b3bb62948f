#include "io/safetensors_header.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "base/error.h"
#include "io/quote_name.h"
#include "io/strict_json.h"

namespace fp4kit::io {

namespace {

using json = nlohmann::json;

std::string type_of(const json& j) { return j.type_name(); }

// A JSON integer >= 0 (nlohmann stores "-0" as a signed integer, hence both branches).
std::optional<uint64_t> non_negative_integer(const json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

std::string range_string(uint64_t begin, uint64_t end) {
  std::string s = "[";  // built up with += : GCC 12 -O3 warns falsely (-Wrestrict) on "[" + std::string
  s += std::to_string(begin);
  s += ", ";
  s += std::to_string(end);
  s += "]";
  return s;
}

class HeaderParser {
 public:
  HeaderParser(uint64_t file_size, std::string_view label) : file_size_(file_size), label_(label) {}

  [[noreturn]] void fail(const std::string& what) const { throw InputError(std::string(label_) + ": " + what); }
  [[noreturn]] void fail(const std::string& tensor, const std::string& what) const {
    fail("tensor " + quote_name(tensor) + ": " + what);
  }

  SafetensorsHeader parse(std::span<const std::byte> prefix) {
    if (file_size_ < 8)
      fail("file is " + std::to_string(file_size_) + " bytes, too short for the 8-byte header length");
    if (prefix.size() < 8) throw Error(std::string(label_) + ": internal: header prefix shorter than 8 bytes");
    const uint64_t length = safetensors_header_length(prefix.first<8>());
    if (length == 0) fail("header length is 0");
    if (length > kMaxSafetensorsHeaderBytes)
      fail("header length " + std::to_string(length) + " exceeds the format's limit of " +
           std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
    if (length > file_size_ - 8)
      fail("header length " + std::to_string(length) + " runs past the end of the file (" +
           std::to_string(file_size_) + " bytes)");
    if (prefix.size() - 8 < length)
      throw Error(std::string(label_) + ": internal: only " + std::to_string(prefix.size()) + " of the " +
                  std::to_string(8 + length) + " header bytes were given to the parser");

    SafetensorsHeader header;
    header.data_offset = 8 + length;
    const std::string_view text(reinterpret_cast<const char*>(prefix.data() + 8), length);
    const json root = parse_strict_json(text, label_, "tensor");
    if (!root.is_object()) fail("header is a JSON " + type_of(root) + ", not an object");
    if (text.front() != '{') fail("header must begin with '{'");

    for (const auto& [key, value] : root.items()) {
      if (key == "__metadata__")
        header.metadata = parse_metadata(value);
      else
        header.tensors.push_back(parse_tensor(key, value, header.data_offset));
    }
    std::sort(header.tensors.begin(), header.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    check_no_overlap(header.tensors);
    return header;
  }

 private:
  std::map<std::string, std::string> parse_metadata(const json& value) const {
    if (!value.is_object()) fail("__metadata__ is a JSON " + type_of(value) + ", not an object of strings");
    std::map<std::string, std::string> metadata;
    for (const auto& [k, v] : value.items()) {
      if (!v.is_string()) fail("__metadata__ value " + quote_name(k) + " is a JSON " + type_of(v) + ", not a string");
      metadata.emplace(k, v.get<std::string>());
    }
    return metadata;
  }

  TensorInfo parse_tensor(const std::string& name, const json& entry, uint64_t data_offset) const {
    if (name.empty()) fail("empty tensor name");
    if (!entry.is_object()) fail(name, "entry is a JSON " + type_of(entry) + ", not an object");
    for (const auto& [k, v] : entry.items())
      if (k != "dtype" && k != "shape" && k != "data_offsets") fail(name, "unexpected key " + quote_name(k));
    for (const char* k : {"dtype", "shape", "data_offsets"})
      if (!entry.contains(k)) fail(name, std::string("missing \"") + k + "\"");

    TensorInfo t;
    t.name = name;
    const json& dtype = entry["dtype"];
    if (!dtype.is_string()) fail(name, "\"dtype\" is a JSON " + type_of(dtype) + ", not a string");
    const auto parsed_dtype = dtype_from_name(dtype.get_ref<const std::string&>());
    if (!parsed_dtype) fail(name, "unknown dtype " + quote_name(dtype.get_ref<const std::string&>()));
    t.dtype = *parsed_dtype;

    const json& shape = entry["shape"];
    if (!shape.is_array()) fail(name, "\"shape\" is a JSON " + type_of(shape) + ", not an array");
    for (const json& d : shape) {
      if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
        fail(name, "shape dimension " + std::to_string(d.get<int64_t>()) + " is negative");
      const auto dim = non_negative_integer(d);
      if (!dim) fail(name, "\"shape\" holds a JSON " + type_of(d) + ", not a non-negative integer");
      if (*dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(name, "shape dimension " + std::to_string(*dim) + " is too large");
      t.shape.push_back(static_cast<int64_t>(*dim));
    }

    const json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2)
      fail(name, "\"data_offsets\" must be an array of two non-negative integers");
    const auto begin = non_negative_integer(offsets[0]);
    const auto end = non_negative_integer(offsets[1]);
    if (!begin || !end) fail(name, "\"data_offsets\" must be an array of two non-negative integers");
    if (*begin > *end) fail(name, "data_offsets " + range_string(*begin, *end) + " end before they begin");
    t.begin = *begin;
    t.end = *end;

    const StorageSize size = storage_size(t.dtype, t.shape);
    if (!size.problem.empty()) fail(name, size.problem);
    if (size.nbytes != t.nbytes())
      fail(name, "shape " + shape_string(t.shape) + " x " + std::string(dtype_name(t.dtype)) + " needs " +
                     std::to_string(size.nbytes) + " bytes but data_offsets span " + std::to_string(t.nbytes()));
    // data_offset <= file_size_ was checked with the header length, so this cannot wrap.
    if (t.end > file_size_ - data_offset)
      fail(name, "data_offsets " + range_string(t.begin, t.end) + " run past the end of the data section (" +
                     std::to_string(file_size_ - data_offset) + " bytes; the file is " +
                     std::to_string(file_size_) + " bytes)");
    return t;
  }

  // `tensors` is sorted by begin. Empty tensors occupy no bytes, so they overlap nothing.
  void check_no_overlap(const std::vector<TensorInfo>& tensors) const {
    const TensorInfo* furthest = nullptr;  // the non-empty tensor reaching furthest so far
    for (const TensorInfo& t : tensors) {
      if (t.nbytes() == 0) continue;
      if (furthest && t.begin < furthest->end)
        fail("tensors " + quote_name(furthest->name) + " " + range_string(furthest->begin, furthest->end) + " and " +
             quote_name(t.name) + " " + range_string(t.begin, t.end) + " overlap");
      if (!furthest || t.end > furthest->end) furthest = &t;
    }
  }

  uint64_t file_size_;
  std::string_view label_;
};

}  // namespace

uint64_t safetensors_header_length(std::span<const std::byte, 8> first_bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint64_t>(first_bytes[static_cast<size_t>(i)]);
  return n;
}

SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file_prefix, uint64_t file_size,
                                           std::string_view label) {
  return HeaderParser(file_size, label).parse(file_prefix);
}

}  // namespace fp4kit::io
