// `fp4kit quantize-tensors --scales mse|four-over-six`: the library's searched scales in the
// ModelOpt layout (fused pairs share the group amax), the method in the file's metadata and the
// JSON report, the default file unchanged, and the refusals.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "convert/convert_test_util.h"
#include "formats/bf16.h"
#include "formats/nvfp4_scale_search.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"
#include "run_command.h"

namespace fp4kit {
namespace {

using testing::read_json_file;
using testing::run_fp4kit;

struct Input {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<uint16_t> bf16;
};

std::vector<Input> inputs() {
  std::mt19937 rng(42);
  std::normal_distribution<float> normal;
  std::vector<Input> out = {{"a.weight", {32, 128}, {}}, {"m.gate_proj.weight", {16, 64}, {}}, {"m.up_proj.weight", {16, 64}, {}}};
  float scale = 0.02f;
  for (Input& in : out) {
    in.bf16.resize(static_cast<size_t>(in.shape[0] * in.shape[1]));
    for (uint16_t& v : in.bf16) v = BF16::from_float(normal(rng) * scale).bits;
    scale *= 3.0f;  // up_proj holds the larger amax
  }
  return out;
}

std::string write_inputs(const std::string& dir) {
  const std::string path = dir + "/in.safetensors";
  io::SafetensorsWriter w(path);
  const std::vector<Input> ins = inputs();
  for (const Input& in : ins) w.declare(in.name, DType::BF16, in.shape);
  w.begin();
  for (const io::TensorInfo& t : w.layout())
    for (const Input& in : ins)
      if (in.name == t.name) w.write(t.name, std::as_bytes(std::span(in.bf16)));
  w.commit();
  return path;
}

std::vector<uint8_t> read(const io::SafetensorsFile& f, const std::string& name) {
  const io::TensorInfo& t = f.at(name);
  std::vector<uint8_t> out(t.nbytes());
  f.read(t, std::as_writable_bytes(std::span(out)));
  return out;
}

TEST(QuantizeTensorsScales, SearchedScalesInTheModelOptLayout) {
  const std::string dir = testing::fresh_temp_dir("qt-scales");
  const std::string in = write_inputs(dir);
  const std::vector<Input> ins = inputs();
  float gate_up = 0;
  for (size_t i = 1; i < 3; ++i)
    gate_up = std::max(gate_up, nvfp4_ref::amax(FloatSpan{ins[i].bf16.data(), DType::BF16, ins[i].bf16.size()}));
  for (const char* numerics : {"modelopt", "modelopt-cuda"}) {
    for (Nvfp4ScaleMethod method : {Nvfp4ScaleMethod::Mse, Nvfp4ScaleMethod::FourOverSix}) {
      const std::string name(scale_method_name(method));
      SCOPED_TRACE(name + " " + numerics);
      const std::string out = dir + "/" + name + "-" + numerics + ".safetensors";
      const auto r = run_fp4kit("quantize-tensors " + in + " " + out + " --numerics " + numerics + " --scales " + name +
                                " --threads 2 --json " + dir + "/r.json");
      ASSERT_EQ(r.exit_code, 0) << r.output;
      const io::SafetensorsFile f = io::SafetensorsFile::open(out);
      EXPECT_EQ(f.header().metadata.at("nvfp4_scales"), name);
      const Nvfp4Numerics n = *numerics_from_name(numerics);
      for (size_t i = 0; i < ins.size(); ++i) {
        const std::string module = ins[i].name.substr(0, ins[i].name.size() - 7);
        const FloatSpan src{ins[i].bf16.data(), DType::BF16, ins[i].bf16.size()};
        const float amax = i == 0 ? nvfp4_ref::amax(src) : gate_up;
        const Nvfp4SearchScaling sc = nvfp4_search_scaling(amax, method, n, DType::BF16);
        std::vector<uint8_t> packed(src.size / 2), scales(src.size / 16);
        nvfp4_search_quantize(src, sc, packed.data(), scales.data(), /*full_sweep=*/true);
        EXPECT_TRUE(read(f, module + ".weight") == packed) << module;
        EXPECT_TRUE(read(f, module + ".weight_scale") == scales) << module;
        std::vector<uint8_t> global(4);
        std::memcpy(global.data(), &sc.weight_scale_2, 4);
        EXPECT_TRUE(read(f, module + ".weight_scale_2") == global) << module;
      }
      const nlohmann::json j = read_json_file(dir + "/r.json");
      EXPECT_EQ(j.at("scales"), name);
      for (const auto& t : j.at("tensors")) EXPECT_EQ(t.at("scales"), name);
    }
  }
  // Max, the default, writes the file it always wrote: no scales key in the metadata.
  ASSERT_EQ(run_fp4kit("quantize-tensors " + in + " " + dir + "/max.safetensors").exit_code, 0);
  EXPECT_FALSE(io::SafetensorsFile::open(dir + "/max.safetensors").header().metadata.count("nvfp4_scales"));
}

TEST(QuantizeTensorsScales, Refusals) {
  const std::string dir = testing::fresh_temp_dir("qt-scales-bad");
  const std::string in = write_inputs(dir), out = dir + "/o.safetensors";
  auto r = run_fp4kit("quantize-tensors " + in + " " + out + " --scales gptq");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--scales gptq: unknown (max, mse, four-over-six, hessian)"), std::string::npos) << r.output;
  r = run_fp4kit("quantize-tensors " + in + " " + out + " --scales hessian");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("use convert --scales hessian --hessian FILE"), std::string::npos) << r.output;
  r = run_fp4kit("quantize-tensors " + in + " " + out + " --scales mse --numerics compressed-tensors");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--numerics modelopt or modelopt-cuda"), std::string::npos) << r.output;
  r = run_fp4kit("quantize-tensors " + in + " " + out + " --scales four-over-six --device cuda");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--device cpu"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace fp4kit
