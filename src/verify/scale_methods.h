#pragma once
// Which method chose the block scales of each NVFP4 weight: fp4kit's convert records it in its
// plan file (`.fp4kit-convert.json`, "scale_methods": weight name -> "max", "mse",
// "four-over-six", "hessian" or "cast" for the lossless MXFP4 cast). Checkpoints written by other
// tools, or by an fp4kit that did not record it, have no entry: the method is then unknown.
#include <map>
#include <string>

namespace fp4kit::verify {

// Module name ("layers.0.attn.wq_a") -> method, from the plan file in `checkpoint_dir`; empty when
// there is none or it does not parse.
std::map<std::string, std::string> read_scale_methods(const std::string& checkpoint_dir);

}  // namespace fp4kit::verify
