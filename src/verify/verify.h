#pragma once
// `verify`: prove an NVFP4 checkpoint complete, consistent, loadable and accurate before anyone
// starts a GPU. Structure (files, index, scales, config, fused groups, source accounting), then one
// streaming pass over the data (block scales, dequant error against the source, lossless casts).
// See docs/verify.md for every check and the failure it prevents.
#include <cstddef>
#include <optional>
#include <string>

#include <vector>

#include "models/engine_contract.h"
#include "verify/verify_report.h"

namespace fp4kit::verify {

struct VerifyOptions {
  std::string checkpoint;
  std::optional<std::string> source;      // the checkpoint it was made from
  unsigned threads = 1;                   // never changes the report's numbers
  bool numerics = true;                   // false: headers, scalars and configs only
  std::optional<double> fail_below_sqnr_db;
  double sqnr_margin_db = 1.0;
  size_t chunk_values = size_t{1} << 16;  // values per row-chunk read; never changes a number either
  // Engines whose loader contract the checkpoint is walked through (all by default).
  std::vector<Engine> engines{kAllEngines.begin(), kAllEngines.end()};
  // The engines were named (--engine): one known to refuse the checkpoint's layout then fails
  // (engine.layout_refused); by default it is skipped with the reason, as one whose table does not
  // cover the layout is.
  bool engines_named = false;
};

// InputError (exit 2) when a directory is not a checkpoint at all; every problem of a checkpoint
// is a finding in the report instead.
VerifyReport verify_checkpoint(const VerifyOptions& options);

}  // namespace fp4kit::verify
