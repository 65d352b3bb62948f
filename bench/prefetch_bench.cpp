// Reading a model layer by layer through the tensor prefetcher, against a raw read of the same
// files in the same run:
//   prefetch_bench MODEL_DIR [--depth N] [--buffered]
// Rows: raw sequential read of every shard (O_DIRECT where allowed, 16 MiB blocks), and the
// prefetcher handing out the forward pass's groups (embedding, each layer, head) to a consumer
// that takes them and does nothing else. Before each row every shard's pages are dropped from the
// page cache (fadvise; best effort: O_DIRECT reads bypass it anyway).
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/layer_groups.h"
#include "engine/model_config.h"
#include "io/direct_io.h"
#include "io/tensor_prefetcher.h"

using namespace fp4kit;

namespace {

void drop_cache(const io::Checkpoint& ckpt) {
  for (const auto& f : ckpt.shard_files()) {
    const int fd = ::open((ckpt.dir() + "/" + f).c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

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

    drop_cache(ckpt);
    uint64_t raw_bytes = 0;
    bool raw_direct = true;
    io::AlignedBuffer block(16u << 20);
    double t0 = now();
    for (const auto& f : ckpt.shard_files()) {
      const std::string path = dir + "/" + f;
      int fd = options.direct ? io::open_direct_read(path) : -1;
      if (fd < 0) {
        raw_direct = false;
        fd = ::open(path.c_str(), O_RDONLY);
      }
      for (off_t off = 0;;) {
        const ssize_t n = ::pread(fd, block.data(), block.size(), off);
        if (n <= 0) break;
        off += n;
        raw_bytes += static_cast<uint64_t>(n);
      }
      ::close(fd);
    }
    const double t_raw = now() - t0;

    drop_cache(ckpt);
    t0 = now();
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
