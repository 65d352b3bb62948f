// Streaming a model onto the GPU layer by layer: disk -> pinned slots (the tensor prefetcher,
// O_DIRECT) -> device (asynchronous copies, overlapping the read of the next group), against the
// two floors measured in the same run: a raw O_DIRECT read of the same files, and host-to-device
// copies from pinned memory alone.
//   gpu_stream_bench MODEL_DIR [--depth N]

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "cuda/pinned_host_allocator.h"
#include "cuda/runtime.h"
#include "engine/layer_groups.h"
#include "engine/model_config.h"
#include "disk_bench_util.h"
#include "io/tensor_prefetcher.h"

using namespace fp4kit;
using bench::drop_cache;
using bench::now;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: gpu_stream_bench MODEL_DIR [--depth N]\n");
    return 2;
  }
  const std::string dir = argv[1];
  io::PrefetchOptions options;
  for (int i = 2; i < argc; ++i)
    if (!std::strcmp(argv[i], "--depth") && i + 1 < argc) options.depth = std::stoul(argv[++i]);
  try {
    const io::Checkpoint ckpt = io::Checkpoint::open(dir);
    const auto groups = engine::forward_tensor_groups(ckpt, engine::ModelConfig::load(dir).layers());
    uint64_t largest = 0, total = 0;
    for (const auto& g : groups) {
      uint64_t b = 0;
      for (const auto& n : g.tensors) b += ckpt.find(n).second->nbytes();
      largest = std::max(largest, b);
      total += b;
    }
    cuda::Stream stream;
    cuda::DeviceBuffer device(largest, "streamed group");

    // Floor 1: raw O_DIRECT read of every shard.
    const bench::RawRead raw = bench::raw_read(ckpt, true);
    const uint64_t raw_bytes = raw.bytes;
    const double t_raw = raw.seconds;

    // Floor 2: pinned host -> device copies of the largest group's size, as many bytes as the groups.
    cuda::PinnedBuffer pinned(largest, "pinned source");
    std::memset(pinned.data(), 1, largest);
    double t0 = now();
    for (uint64_t done = 0; done < total; done += largest)
      cuda::copy_to_device(device.data(), pinned.data(), std::min(largest, total - done), stream);
    stream.synchronize();
    const double t_h2d = now() - t0;

    // The stream: each group copied to the device while the reader reads the next ones.
    drop_cache(ckpt);
    options.allocator = cuda::pinned_host_allocator();
    t0 = now();
    io::PrefetchStats stats;
    {
      io::TensorPrefetcher prefetcher(ckpt, groups, options);
      while (auto g = prefetcher.next()) {
        size_t at = 0;
        for (const auto& t : g->tensors()) {
          cuda::copy_to_device(device.data<std::byte>() + at, t.bytes.data(), t.bytes.size(), stream);
          at += t.bytes.size();
        }
        stream.synchronize("group upload");  // the slot goes back once its bytes are on the device
      }
      stats = prefetcher.stats();
    }
    const double t_stream = now() - t0;

    const double gb = static_cast<double>(total) * 1e-9, raw_gb = static_cast<double>(raw_bytes) * 1e-9;
    std::printf("model %s: %zu groups, %.2f GB of forward-pass tensors (largest group %.2f GB), %.2f GB in files\n",
                dir.c_str(), groups.size(), gb, static_cast<double>(largest) * 1e-9, raw_gb);
    std::printf("| row | seconds | GB/s |\n|---|---:|---:|\n");
    std::printf("| raw O_DIRECT read of every shard | %.3f | %.2f |\n", t_raw, raw_gb / t_raw);
    std::printf("| pinned host -> device copies | %.3f | %.2f |\n", t_h2d, gb / t_h2d);
    std::printf("| disk -> pinned slots -> device, depth %zu | %.3f | %.2f |\n", options.depth, t_stream, gb / t_stream);
    std::printf("stream / raw read: %.2f (%zu O_DIRECT spans, %zu buffered)\n", (gb / t_stream) / (raw_gb / t_raw),
                stats.direct_spans, stats.buffered_spans);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  }
  return 0;
}
