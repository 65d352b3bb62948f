#include "convert/sharded_job.h"

#include <unistd.h>

#include <filesystem>

#include "base/error.h"
#include "convert/shard_hash.h"
#include "convert/source_checkpoint.h"
#include "io/atomic_file.h"
#include "io/strict_json.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

// In the plan file: shard name -> {bytes, xxh3_64 of its data section}, for every published shard.
constexpr const char* kFinishedShardsKey = "finished_shards";

}  // namespace

ShardedJobCounts run_sharded_job(const ShardedJob& job, ShardSink& sink) {
  const JobPlanFile& plan_file = *job.plan_file;
  const Destination destination = inspect_destination(job.dst_dir, plan_file, job.manifest, job.resume);

  // Shards an earlier run published, with the hash it recorded for each: kept only if it matches.
  nlohmann::json manifest = job.manifest;
  if (job.hashed_shards) manifest[kFinishedShardsKey] = nlohmann::json::object();
  nlohmann::json recorded = nlohmann::json::object();
  if (destination != Destination::Empty) {
    const nlohmann::json stored =
        io::parse_strict_json(read_text_file(join_path(job.dst_dir, plan_file.file_name)), job.dst_dir);
    if (stored.contains(kFinishedShardsKey) && stored.at(kFinishedShardsKey).is_object())
      recorded = stored.at(kFinishedShardsKey);
  }
  prepare_destination(job.dst_dir, plan_file, manifest);

  ShardedJobCounts counts;
  const std::optional<unsigned> crash_after = crash_after_shards();
  const std::vector<io::PlannedShard>& shards = *job.shards;
  for (size_t s = 0; s < shards.size(); ++s) {
    const io::PlannedShard& shard = shards[s];
    const std::string path = join_path(job.dst_dir, shard.file);
    if (destination != Destination::Empty && shard_is_finished(path, job.shard_outputs[s], job.shard_metadata)) {
      // A job that records hashes keeps a shard only if its data still hashes to the record.
      if (!job.hashed_shards || (recorded.contains(shard.file) &&
                                 recorded.at(shard.file).value("xxh3_64", std::string()) == shard_data_xxh3(path))) {
        if (job.hashed_shards) manifest[kFinishedShardsKey][shard.file] = recorded.at(shard.file);
        ++counts.shards_skipped;
        sink.skip(shard);
        continue;
      }
    }
    std::optional<std::string> hash;
    try {
      hash = sink.write(shard, path);
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (shards finished before it are kept: after fixing the cause, rerun with "
                  "--resume)");
    }
    if (job.hashed_shards) {
      if (!hash) throw Error(path + ": written without the hash the job records");
      manifest[kFinishedShardsKey][shard.file] = {{"bytes", shard.bytes}, {"xxh3_64", *hash}};
      // The record follows the shard: a kill between the two only makes --resume write it again.
      io::write_file_atomic(join_path(job.dst_dir, plan_file.file_name), manifest.dump(2) + "\n");
    }
    ++counts.shards_written;
    if (crash_after && counts.shards_written == *crash_after) ::_exit(137);
  }

  // Last: the other files, the JSON files, the index, then the plan marked complete.
  std::error_code ec;
  for (const std::string& rel : job.extra_files) {
    const fs::path to = fs::path(job.dst_dir) / rel;
    fs::create_directories(to.parent_path(), ec);
    if (ec) throw Error(to.parent_path().string() + ": cannot create the directory: " + ec.message());
    copy_file_atomically(join_path(job.src_dir, rel), to.string());
    ++counts.files_copied;
  }
  for (const auto& [name, text] : job.text_files) io::write_file_atomic(join_path(job.dst_dir, name), text);
  job.index.save(join_path(job.dst_dir, io::kIndexFileName));
  finish_destination(job.dst_dir, plan_file, manifest);
  return counts;
}

}  // namespace fp4kit
