#include "io/safetensors_header.h"

#include <gtest/gtest.h>

#include "io_test_util.h"

namespace fp4kit::io {
namespace {

using testing::expect_error;
using testing::safetensors_bytes;

constexpr std::string_view kLabel = "model-00001.safetensors";

SafetensorsHeader parse(const std::vector<std::byte>& bytes) {
  return parse_safetensors_header(bytes, bytes.size(), kLabel);
}

// A header holding one tensor entry, `entry` being the JSON object text, with `data` bytes of data.
std::vector<std::byte> one_tensor(std::string_view name, std::string_view entry, size_t data) {
  return safetensors_bytes("{\"" + std::string(name) + "\":" + std::string(entry) + "}", data);
}

void expect_bad(const std::vector<std::byte>& bytes, std::initializer_list<std::string_view> needles) {
  expect_error([&] { parse(bytes); }, needles);
}

TEST(SafetensorsHeader, ParsesTensorsSortedByOffsetWithMetadata) {
  const auto bytes = safetensors_bytes(
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]},"s":{"dtype":"F32","shape":[],"data_offsets":[16,20]},)"
      R"("e":{"dtype":"F16","shape":[0,5],"data_offsets":[20,20]}})",
      20);
  const SafetensorsHeader h = parse(bytes);
  EXPECT_EQ(h.data_offset, bytes.size() - 20);
  EXPECT_EQ(h.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.tensors[0].name, "b");
  EXPECT_EQ(h.tensors[1].name, "a");
  EXPECT_EQ(h.tensors[1].dtype, DType::BF16);
  EXPECT_EQ(h.tensors[1].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(h.tensors[1].begin, 8u);
  EXPECT_EQ(h.tensors[1].end, 16u);
  EXPECT_EQ(h.tensors[2].name, "s");
  EXPECT_EQ(h.tensors[2].numel(), 1);
  EXPECT_EQ(h.tensors[3].name, "e");
  EXPECT_EQ(h.tensors[3].numel(), 0);
  EXPECT_EQ(h.tensors[3].nbytes(), 0u);
}

TEST(SafetensorsHeader, AllowsGapsTrailingBytesAndEmptyTensorsInsideOthers) {
  const auto bytes = safetensors_bytes(
      R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]},)"
      R"("z":{"dtype":"U8","shape":[0],"data_offsets":[9,9]}})",
      40);
  EXPECT_EQ(parse(bytes).tensors.size(), 3u);
}

TEST(SafetensorsHeader, AcceptsPaddingAndEmptyHeader) {
  EXPECT_TRUE(parse(safetensors_bytes("{}      ")).tensors.empty());
  EXPECT_TRUE(parse(safetensors_bytes(R"({"__metadata__":{}}   )")).metadata.empty());
}

TEST(SafetensorsHeader, AcceptsF4WithWholeBytes) {
  const auto h = parse(one_tensor("w", R"({"dtype":"F4","shape":[3,2],"data_offsets":[0,3]})", 3));
  EXPECT_EQ(h.tensors[0].dtype, DType::F4);
  EXPECT_EQ(h.tensors[0].nbytes(), 3u);
}

TEST(SafetensorsHeader, ShapeSizeMismatchMessageNamesFileTensorAndSizes) {
  const std::string header =
      R"({"layers.0.attn.wq_a.weight":{"dtype":"F8_E4M3","shape":[128,128],"data_offsets":[0,16000]}})";
  const auto prefix = safetensors_bytes(header);
  try {
    parse_safetensors_header(prefix, prefix.size() + 16384, kLabel);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(),
                 "model-00001.safetensors: tensor 'layers.0.attn.wq_a.weight': shape [128, 128] x F8_E4M3 "
                 "needs 16384 bytes but data_offsets span 16000");
  }
}

TEST(SafetensorsHeader, RejectsFileShorterThanEightBytes) {
  expect_bad(testing::to_bytes(""), {kLabel, "0 bytes"});
  expect_bad(testing::to_bytes("abc"), {kLabel, "3 bytes"});
}

TEST(SafetensorsHeader, RejectsZeroHeaderLength) { expect_bad(safetensors_bytes("", 16), {kLabel, "header length is 0"}); }

TEST(SafetensorsHeader, RejectsHeaderLengthOverLimit) {
  const auto prefix = safetensors_bytes("", 0, kMaxSafetensorsHeaderBytes + 1);
  expect_error([&] { parse_safetensors_header(prefix, uint64_t{1} << 40, kLabel); },
               {kLabel, "100000001", "limit"});
}

TEST(SafetensorsHeader, RejectsLyingHeaderLength) {
  expect_bad(safetensors_bytes("{}      ", 0, 1000), {kLabel, "header length 1000", "past the end"});
  expect_bad(safetensors_bytes("{}      ", 0, ~uint64_t{0} - 4), {kLabel, "header length"});
}

TEST(SafetensorsHeader, RejectsInvalidJson) {
  expect_bad(safetensors_bytes(R"({"a":)"), {kLabel, "not valid JSON"});
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x)", 4), {kLabel, "JSON"});
  expect_bad(safetensors_bytes(std::string_view("{}\0\0\0\0\0\0", 8)), {kLabel, "JSON"});
}

TEST(SafetensorsHeader, RejectsInvalidUtf8) {
  expect_bad(safetensors_bytes("{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
             {kLabel, "UTF-8"});
  expect_bad(safetensors_bytes("{\"a\xc0\xaf\":1}"), {kLabel, "UTF-8"});  // overlong '/'
  expect_bad(safetensors_bytes(R"({"a\ud800":1})"), {kLabel, "JSON"});    // lone surrogate
}

TEST(SafetensorsHeader, RejectsNonObjectHeader) {
  expect_bad(safetensors_bytes("[1,2]   "), {kLabel, "array, not an object"});
  expect_bad(safetensors_bytes("42"), {kLabel, "not an object"});
  expect_bad(safetensors_bytes("  {}"), {kLabel, "must begin with '{'"});
  expect_bad(safetensors_bytes("\xef\xbb\xbf{}"), {kLabel, "must begin with '{'"});  // BOM
}

TEST(SafetensorsHeader, RejectsNonObjectTensorEntry) {
  expect_bad(one_tensor("w", "5", 0), {kLabel, "tensor 'w'", "not an object"});
  expect_bad(one_tensor("w", "[]", 0), {kLabel, "tensor 'w'", "array"});
}

TEST(SafetensorsHeader, RejectsMissingExtraAndIllTypedKeys) {
  expect_bad(one_tensor("w", R"({"shape":[1],"data_offsets":[0,4]})", 4), {kLabel, "tensor 'w'", "missing \"dtype\""});
  expect_bad(one_tensor("w", R"({"dtype":"F32","data_offsets":[0,4]})", 4), {kLabel, "tensor 'w'", "missing \"shape\""});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1]})", 4), {kLabel, "tensor 'w'", "missing \"data_offsets\""});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1})", 4),
             {kLabel, "tensor 'w'", "unexpected key 'extra'"});
  expect_bad(one_tensor("w", R"({"dtype":5,"shape":[1],"data_offsets":[0,4]})", 4), {kLabel, "tensor 'w'", "dtype"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":4,"data_offsets":[0,4]})", 4), {kLabel, "tensor 'w'", "shape"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1.0],"data_offsets":[0,4]})", 4), {kLabel, "tensor 'w'", "shape"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":["1"],"data_offsets":[0,4]})", 4), {kLabel, "tensor 'w'", "shape"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0]})", 4), {kLabel, "tensor 'w'", "data_offsets"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,4]})", 4), {kLabel, "tensor 'w'", "data_offsets"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})", 4), {kLabel, "tensor 'w'", "data_offsets"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1],"data_offsets":{"a":0}})", 4), {kLabel, "tensor 'w'", "data_offsets"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0,4.0]})", 4), {kLabel, "tensor 'w'", "data_offsets"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]})", 4),
             {kLabel, "tensor 'w'", "data_offsets"});
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})", 8),
             {kLabel, "tensor 'w'", "[8, 4] end before they begin"});
}

TEST(SafetensorsHeader, RejectsBadMetadata) {
  expect_bad(safetensors_bytes(R"({"__metadata__":[1]})"), {kLabel, "__metadata__", "not an object"});
  expect_bad(safetensors_bytes(R"({"__metadata__":null})"), {kLabel, "__metadata__"});
  expect_bad(safetensors_bytes(R"({"__metadata__":{"format":1}})"), {kLabel, "__metadata__", "'format'", "not a string"});
  expect_bad(safetensors_bytes(R"({"__metadata__":{"a":{"b":"c"}}})"), {kLabel, "__metadata__", "'a'"});
}

TEST(SafetensorsHeader, RejectsUnknownDtype) {
  expect_bad(one_tensor("w", R"({"dtype":"F7","shape":[1],"data_offsets":[0,1]})", 1),
             {kLabel, "tensor 'w'", "unknown dtype 'F7'"});
  expect_bad(one_tensor("w", R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})", 4), {kLabel, "tensor 'w'", "'f32'"});
}

TEST(SafetensorsHeader, RejectsNegativeDims) {
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[-3,4],"data_offsets":[0,0]})", 0),
             {kLabel, "tensor 'w'", "dimension -3 is negative"});
}

TEST(SafetensorsHeader, RejectsHugeDimsWithoutOverflow) {
  // 2^32 cubed wraps to 0 in 64 bits: a wrapped product would "fit" the empty range [0, 0].
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]})", 0),
             {kLabel, "tensor 'w'", "more than 2^63 elements"});
  // 2^62 elements fit, 2^62 x 32 bits do not.
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]})", 0),
             {kLabel, "tensor 'w'", "2^63 bits"});
  expect_bad(one_tensor("w", R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]})", 0),
             {kLabel, "tensor 'w'", "too large"});
}

TEST(SafetensorsHeader, RejectsPartialBytes) {
  expect_bad(one_tensor("w", R"({"dtype":"F4","shape":[3],"data_offsets":[0,2]})", 2),
             {kLabel, "tensor 'w'", "12 bits, not a whole number of bytes"});
  expect_bad(one_tensor("w", R"({"dtype":"F6_E2M3","shape":[2],"data_offsets":[0,2]})", 2),
             {kLabel, "tensor 'w'", "not a whole number of bytes"});
}

TEST(SafetensorsHeader, RejectsSizeMismatch) {
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})", 16),
             {kLabel, "tensor 'w'", "needs 16 bytes but data_offsets span 12"});
  expect_bad(one_tensor("w", R"({"dtype":"F4","shape":[4],"data_offsets":[0,4]})", 4),
             {kLabel, "tensor 'w'", "needs 2 bytes"});
}

TEST(SafetensorsHeader, RejectsOutOfRangeOffsetsAndTruncatedData) {
  expect_bad(one_tensor("w", R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 8),
             {kLabel, "tensor 'w'", "past the end", "8 bytes"});
  expect_bad(one_tensor("w", R"({"dtype":"U8","shape":[0],"data_offsets":[9,9]})", 8), {kLabel, "tensor 'w'", "past the end"});
  // A valid file with its last bytes cut off.
  auto bytes = one_tensor("w", R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 16);
  EXPECT_NO_THROW(parse(bytes));
  bytes.resize(bytes.size() - 1);
  expect_bad(bytes, {kLabel, "tensor 'w'", "past the end"});
}

TEST(SafetensorsHeader, RejectsOverlap) {
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                               R"("b":{"dtype":"U8","shape":[16],"data_offsets":[8,24]}})",
                               24),
             {kLabel, "'a' [0, 16]", "'b' [8, 24]", "overlap"});
  // Overlap with an earlier tensor that is not the previous one.
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                               R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                               R"("c":{"dtype":"U8","shape":[4],"data_offsets":[10,14]}})",
                               24),
             {kLabel, "overlap"});
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                               R"("b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                               4),
             {kLabel, "'a'", "'b'", "overlap"});
}

TEST(SafetensorsHeader, RejectsDuplicateNamesAndKeys) {
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                               R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                               8),
             {kLabel, "tensor 'a' appears twice"});
  expect_bad(one_tensor("w", R"({"dtype":"U8","dtype":"F32","shape":[4],"data_offsets":[0,4]})", 4),
             {kLabel, "tensor 'w'", "key 'dtype' appears twice"});
  expect_bad(safetensors_bytes(R"({"__metadata__":{},"__metadata__":{}})"), {kLabel, "'__metadata__' appears twice"});
}

TEST(SafetensorsHeader, RejectsEmptyTensorName) {
  expect_bad(one_tensor("", R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})", 4), {kLabel, "empty tensor name"});
}

TEST(SafetensorsHeader, RejectsDeepNesting) {
  const std::string deep = "{\"w\":" + std::string(1000, '[') + std::string(1000, ']') + "}";
  expect_bad(safetensors_bytes(deep), {kLabel, "nests deeper"});
}

TEST(SafetensorsHeader, KeepsMessagesOnOneLineWhateverTheName) {
  expect_bad(one_tensor("a\\nb\\u0000", R"({"dtype":"F7","shape":[1],"data_offsets":[0,1]})", 1),
             {kLabel, "tensor 'a\\x0ab\\x00'"});
  expect_bad(safetensors_bytes("{\"a\n\":1}"), {kLabel, "JSON"});  // raw newline: invalid JSON, message still one line
}

TEST(SafetensorsHeader, HeaderLengthIsLittleEndian) {
  const auto bytes = safetensors_bytes("", 0, 0x0102030405060708ull);
  EXPECT_EQ(safetensors_header_length(std::span<const std::byte, 8>(bytes.data(), 8)), 0x0102030405060708ull);
}

}  // namespace
}  // namespace fp4kit::io
