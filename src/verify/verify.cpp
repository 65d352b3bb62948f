#include "verify/verify.h"

#include "verify/layout_config.h"
#include "verify/scale_methods.h"

#include <chrono>

#include "io/checkpoint_index.h"
#include "verify/checkpoint_files.h"
#include "verify/config_coverage.h"
#include "verify/data_pass.h"
#include "verify/engine_contract_check.h"
#include "verify/layout_config.h"
#include "verify/nvfp4_modules.h"
#include "verify/source_accounting.h"

namespace fp4kit::verify {

VerifyReport verify_checkpoint(const VerifyOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  VerifyReport report;
  report.checkpoint = options.checkpoint;
  report.source = options.source.value_or("");
  report.threads = options.threads;
  report.fail_below_sqnr_db = options.fail_below_sqnr_db;

  const io::Checkpoint output = io::Checkpoint::open(options.checkpoint);
  std::optional<io::Checkpoint> source;
  if (options.source) source.emplace(io::Checkpoint::open(*options.source));

  const CheckpointTensors tensors = check_checkpoint_files(output, report);
  report.shards = tensors.shards.size();
  report.tensors = tensors.tensors.size();
  report.checkpoint_bytes = tensors.bytes;

  const LayoutConfig config = read_layout_config(options.checkpoint, report);
  report.layout = std::string(layout_name(config.layout));
  report.producer = config.producer;

  const Nvfp4Inventory inventory = check_nvfp4_modules(output, tensors, config, report);
  report.nvfp4_weights = inventory.modules.size();
  check_config_coverage(config, tensors, inventory, report);
  check_engine_contracts(options.engines, options.engines_named, config, tensors, inventory, report);

  std::optional<SourceAccounting> accounting;
  if (source) {
    const CheckpointTensors source_tensors = check_checkpoint_files(*source, report, "source.");
    accounting = account_for_source(source_tensors, tensors, inventory, report);
    check_source_config(*options.source, config, report);
    report.kept = accounting->kept.size();
    report.dequantized = accounting->dequantized.size();
  }

  if (options.numerics) {
    DataPassOptions d;
    d.threads = options.threads;
    d.sqnr_margin_db = options.sqnr_margin_db;
    d.fail_below_sqnr_db = options.fail_below_sqnr_db;
    d.chunk_values = options.chunk_values;
    const std::map<std::string, std::string> methods = read_scale_methods(report.checkpoint);
    for (const auto& [module, method] : methods)
      if (method.ends_with("+gptq")) d.gptq_modules.insert(module);
      else if (method == "hessian") d.hessian_modules.insert(module);
    run_data_pass(output, inventory, source ? &*source : nullptr, accounting ? &*accounting : nullptr, d, report);
    for (TensorNumerics& n : report.numerics)
      if (const auto it = methods.find(module_of_weight(n.name)); it != methods.end()) n.scale_method = it->second;
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace fp4kit::verify
