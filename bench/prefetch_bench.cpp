// Reading a model layer by layer through the tensor prefetcher, against a raw read of the same
// files in the same run:
//   prefetch_bench MODEL_DIR [--depth N] [--buffered]
// Rows: raw sequential read of every shard (O_DIRECT where allowed, 16 MiB blocks), and the
// prefetcher handing out the forward pass's groups (embedding, each layer, head) to a consumer
// that takes them and does nothing else. Before each row every shard's pages are dropped from the
// page cache (fadvise; best effort: O_DIRECT reads bypass it anyway).

#include <cstdio>
#include <cstring>
#include <string>

#include "engine/layer_groups.h"
#include "engine/model_config.h"
#include "disk_bench_util.h"
#include "io/tensor_prefetcher.h"

using namespace fp4kit;
using bench::drop_cache;
using bench::now;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: prefetch_bench MODEL_DIR [--depth N] [--buffered]\n");
    return 2;
  }
  const std::string dir = argv[1];
  io::PrefetchOptions options;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--depth") && i + 1 < argc) options.depth = std::stoul(argv[++i]);
    else if (!std::strcmp(argv[i], "--buffered")) options.direct = false;
  }
  try {
    const io::Checkpoint ckpt = io::Checkpoint::open(dir);
    const engine::ModelConfig cfg = engine::ModelConfig::load(dir);
    const auto groups = engine::forward_tensor_groups(ckpt, cfg.layers());

    const bench::RawRead raw = bench::raw_read(ckpt, options.direct);
    const uint64_t raw_bytes = raw.bytes;
    const bool raw_direct = raw.direct;
    const double t_raw = raw.seconds;

    drop_cache(ckpt);
    const double t0 = now();
    io::PrefetchStats stats;
    {
      io::TensorPrefetcher prefetcher(ckpt, groups, options);
      while (auto g = prefetcher.next()) {
      }
      stats = prefetcher.stats();
    }
    const double t_prefetch = now() - t0;

    const double raw_gb = static_cast<double>(raw_bytes) * 1e-9, tensor_gb = static_cast<double>(stats.tensor_bytes) * 1e-9;
    const double raw_gbs = raw_gb / t_raw, pf_gbs = tensor_gb / t_prefetch;
    std::printf("model %s: %zu shards, %.2f GB in files, %zu groups, %.2f GB of forward-pass tensors\n", dir.c_str(),
                ckpt.shard_files().size(), raw_gb, groups.size(), tensor_gb);
    std::printf("| row | seconds | GB/s | note |\n|---|---:|---:|---|\n");
    std::printf("| raw read of every shard | %.3f | %.2f | %s, 16 MiB blocks |\n", t_raw, raw_gbs,
                raw_direct ? "O_DIRECT" : "page cache");
    std::printf("| prefetcher, depth %zu | %.3f | %.2f | %zu O_DIRECT / %zu buffered spans, %.2f GB read, peak slots %.1f MB |\n",
                options.depth, t_prefetch, pf_gbs, stats.direct_spans, stats.buffered_spans, static_cast<double>(stats.bytes_read) * 1e-9,
                static_cast<double>(stats.peak_slot_bytes) * 1e-6);
    std::printf("prefetcher / raw: %.2f\n", pf_gbs / raw_gbs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  }
  return 0;
}
