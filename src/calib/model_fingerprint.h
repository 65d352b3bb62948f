#pragma once
// What identifies the checkpoint a calibration ran on: its config.json text and its shard files'
// names and sizes. The calibration run's fingerprint starts with it; the XᵀX statistics file
// carries it on its own, so that `convert` can refuse statistics of another checkpoint.
#include <string>

#include "convert/fingerprint.h"

namespace fp4kit {

// Adds config.json and every shard's name and size. InputError if they cannot be read.
void add_checkpoint_identity(Fingerprint& f, const std::string& model_dir);

// The fingerprint of add_checkpoint_identity alone.
std::string calibration_model_fingerprint(const std::string& model_dir);

}  // namespace fp4kit
