#pragma once
// The output side of a checkpoint job (dequant, convert): refusing a destination that holds
// anything but an earlier run of the same job, with the same source and options; the plan file
// that tells them apart; recognising shards an earlier run finished; publishing files atomically;
// and the test hook that simulates a kill between shards.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/tensor_info.h"

namespace fp4kit {

enum class Destination { Empty, Unfinished, Finished };

struct JobPlanFile {
  std::string_view job;        // "dequant", "convert": used in messages
  std::string_view file_name;  // ".fp4kit-dequant.json", kept in the output directory
  std::string_view format;     // the manifest's "format"
  // Manifest option key -> the flag that sets it, for messages ("shard_bytes" -> "--shard-size").
  std::map<std::string, std::string> option_flags;
};

// The fields of a stored manifest that differ from a planned one, in words ("" if none); "complete"
// is not compared. A manifest is {format, complete, source: {files}, options: {...}, output}.
std::string manifest_difference(const JobPlanFile& job, const nlohmann::json& stored, const nlohmann::json& planned);

// What dst holds. InputError for anything but nothing at all or a run of the same job, source and
// options (and that only with `resume`).
Destination inspect_destination(const std::string& dst, const JobPlanFile& job, const nlohmann::json& planned,
                                bool resume);

// Creates dst, removes a killed run's temporaries and writes the plan file, not yet complete.
void prepare_destination(const std::string& dst, const JobPlanFile& job, nlohmann::json manifest);
// Marks the plan file complete: the last file a job writes.
void finish_destination(const std::string& dst, const JobPlanFile& job, nlohmann::json manifest);

// A shard an earlier run published: its header must list exactly `tensors` (name, dtype, shape)
// with `metadata`, and the file must end where its data does.
bool shard_is_finished(const std::string& path, const std::vector<const io::TensorInfo*>& tensors,
                       const std::map<std::string, std::string>& metadata);

// Page-cache hint after a published shard (clean pages nobody reads back). Best effort.
void drop_written_pages(const std::string& path);

void copy_file_atomically(const std::string& from, const std::string& to);

// Test hook: the process ends with _exit(137) right after this many shards were published by the
// run, as if killed by SIGKILL at that point. Shared by every job.
inline constexpr const char* kCrashAfterShardsEnv = "FP4KIT_TEST_CRASH_AFTER_SHARDS";
std::optional<unsigned> crash_after_shards();

}  // namespace fp4kit
