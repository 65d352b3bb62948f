// Fuzz target: a checkpoint's JSON files as verify reads them. The input is config.json, or
// config.json and hf_quant_config.json separated by a line "#hf_quant_config.json". It goes through
// the layout reader and every engine's loader-contract walk (which builds the DeepSeek V4 model the
// config describes), and through the index parser as model.safetensors.index.json. Rejecting input
// is a finding in the report or an fp4kit::Error; any other exception, a crash, a hang, running out
// of memory or a sanitizer report is a bug.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "io/checkpoint_index.h"
#include "verify/engine_contract_check.h"
#include "verify/layout_config.h"

namespace {

// One directory for the whole run, its files rewritten for each input.
const std::string& scratch_dir() {
  static const std::string dir = [] {
    const std::string d = (std::filesystem::exists("/dev/shm") ? std::string("/dev/shm") : std::filesystem::temp_directory_path().string()) +
                          "/fp4kit-config-json-fuzz-" + std::to_string(::getpid());
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

void write(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  constexpr std::string_view kSplit = "\n#hf_quant_config.json\n";
  const size_t at = input.find(kSplit);
  const std::string& dir = scratch_dir();
  write(dir + "/config.json", input.substr(0, at));
  if (at == std::string_view::npos) std::filesystem::remove(dir + "/hf_quant_config.json");
  else write(dir + "/hf_quant_config.json", input.substr(at + kSplit.size()));

  fp4kit::verify::VerifyReport report;
  const fp4kit::verify::LayoutConfig config = fp4kit::verify::read_layout_config(dir, report);
  const fp4kit::verify::CheckpointTensors no_tensors;
  const fp4kit::verify::Nvfp4Inventory no_modules;
  // As `fp4kit verify` without --engine: an engine known to refuse the layout is skipped with the reason.
  fp4kit::verify::check_engine_contracts({fp4kit::kAllEngines.begin(), fp4kit::kAllEngines.end()}, false, config,
                                         no_tensors, no_modules, report);

  write(dir + "/model.safetensors.index.json", input);
  try {
    (void)fp4kit::io::CheckpointIndex::load(dir + "/model.safetensors.index.json");
  } catch (const fp4kit::Error&) {
  }
  return 0;
}
