#pragma once
// The calibration batch of an I64 `input_ids` [batch, seq] safetensors file (the oracle's ids).
#include <span>
#include <string>

#include "calib/calibrate.h"
#include "io/safetensors_file.h"

namespace fp4kit::testing {

inline CalibrationBatch load_calibration_ids(const std::string& path) {
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const io::TensorInfo& t = f.at("input_ids");
  CalibrationBatch b;
  b.batch = t.shape[0];
  b.seq = t.shape[1];
  b.ids.resize(static_cast<size_t>(t.numel()));
  f.read(t, std::as_writable_bytes(std::span(b.ids)));
  b.source = path;
  return b;
}

}  // namespace fp4kit::testing
