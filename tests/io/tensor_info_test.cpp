#include "io/tensor_info.h"

#include <gtest/gtest.h>

namespace fp4kit::io {
namespace {

TEST(TensorInfo, ShapeStringAndNumel) {
  EXPECT_EQ(shape_string({256, 128}), "[256, 128]");
  EXPECT_EQ(shape_string({}), "[]");
  EXPECT_EQ(shape_string({0}), "[0]");
  TensorInfo t{"w", DType::F32, {2, 3, 4}, 8, 104};
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  t.shape = {};
  EXPECT_EQ(t.numel(), 1);
  t.shape = {7, 0};
  EXPECT_EQ(t.numel(), 0);
}

TEST(TensorInfo, StorageSize) {
  const std::vector<int64_t> shape = {3, 8};
  EXPECT_EQ(storage_size(DType::F32, shape).nbytes, 96u);
  EXPECT_EQ(storage_size(DType::F4, shape).nbytes, 12u);
  EXPECT_EQ(storage_size(DType::F6_E2M3, shape).nbytes, 18u);
  EXPECT_EQ(storage_size(DType::F4, std::vector<int64_t>{}).problem, "shape [] x F4 is 4 bits, not a whole number of bytes");
  EXPECT_EQ(storage_size(DType::BF16, std::vector<int64_t>{}).nbytes, 2u);
  EXPECT_EQ(storage_size(DType::BF16, std::vector<int64_t>{0, 5}).nbytes, 0u);
  EXPECT_EQ(storage_size(DType::U8, std::vector<int64_t>{4, -1}).problem, "shape dimension -1 is negative");
  const int64_t big = int64_t{1} << 32;
  EXPECT_NE(storage_size(DType::U8, std::vector<int64_t>{big, big}).problem.find("2^63 elements"), std::string::npos);
  EXPECT_NE(storage_size(DType::F64, std::vector<int64_t>{big, big / 4}).problem.find("2^63 bits"), std::string::npos);
  EXPECT_EQ(storage_size(DType::U8, std::vector<int64_t>{big, big / 64}).nbytes, uint64_t{1} << 58);
}

}  // namespace
}  // namespace fp4kit::io
