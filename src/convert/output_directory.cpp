#include "convert/output_directory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "base/errno_text.h"
#include "base/error.h"
#include "convert/source_checkpoint.h"
#include "io/atomic_file.h"
#include "io/quote_name.h"
#include "io/safetensors_file.h"
#include "io/strict_json.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

nlohmann::json field(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) ? j.at(key) : nlohmann::json();
}

// A killed run leaves AtomicFile temporaries behind; none of them is ever reused.
void remove_temporaries(const std::string& dst) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(dst, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && !it->is_symlink(type_ec) &&
        is_temporary_file_name(it->path().filename().string()))
      stale.push_back(it->path());
  }
  if (ec) throw Error(dst + ": cannot list the directory: " + ec.message());
  for (const fs::path& p : stale)
    if (!fs::remove(p, ec) && ec) throw Error(p.string() + ": cannot remove a stale temporary file: " + ec.message());
}

}  // namespace

std::string manifest_difference(const JobPlanFile& job, const nlohmann::json& stored, const nlohmann::json& planned) {
  if (field(stored, "format") != field(planned, "format"))
    return "its plan has format " + field(stored, "format").dump() + ", this fp4kit writes " + field(planned, "format").dump();
  const nlohmann::json old_files = field(field(stored, "source"), "files");
  const nlohmann::json new_files = field(field(planned, "source"), "files");
  if (old_files != new_files) {
    if (!old_files.is_array() || old_files.size() != new_files.size()) return "the source's shard files differ";
    for (size_t i = 0; i < new_files.size(); ++i) {
      if (old_files[i] == new_files[i]) continue;
      const std::string name = new_files[i].value("name", std::string());
      if (field(old_files[i], "name") != new_files[i].at("name"))
        return "the source's shard files differ (" + field(old_files[i], "name").dump() + " vs '" + name + "')";
      return "source shard '" + name + "' changed (size or header)";
    }
  }
  const nlohmann::json old_options = field(stored, "options");
  const nlohmann::json new_options = field(planned, "options");
  if (old_options != new_options) {
    auto flag_of = [&](const std::string& key) {
      const auto flag = job.option_flags.find(key);
      return flag == job.option_flags.end() ? key : flag->second;
    };
    for (const auto& [key, value] : new_options.items()) {
      const nlohmann::json old_value = field(old_options, key.c_str());
      if (old_value == value) continue;
      if (old_value.is_null() && !old_options.contains(key))
        return "it was written without " + flag_of(key) + ", not with " + flag_of(key) + " " + value.dump();
      return "it was written with " + flag_of(key) + " " + old_value.dump() + ", not " + value.dump();
    }
    if (old_options.is_object())
      for (const auto& [key, value] : old_options.items())
        if (!new_options.contains(key)) return "it was written with " + flag_of(key) + " " + value.dump();
    return "its options differ";
  }
  if (field(stored, "output") != field(planned, "output")) return "its output layout differs";
  return "";
}

Destination inspect_destination(const std::string& dst, const JobPlanFile& job, const nlohmann::json& planned,
                                bool resume) {
  const std::string name_of_job(job.job);
  std::error_code ec;
  if (!fs::exists(dst, ec)) return Destination::Empty;
  if (!fs::is_directory(dst, ec)) throw InputError(dst + ": exists and is not a directory");
  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(dst, ec)) {
    const std::string name = entry.path().filename().string();
    // A plan file's temporary alone is what a run killed before its first shard leaves.
    const bool plan_temporary = is_temporary_file_name(name) && std::string_view(name).substr(1).starts_with(job.file_name);
    if (!plan_temporary)
      entries.push_back(name);
  }
  if (ec) throw InputError(dst + ": cannot list the directory: " + ec.message());
  if (entries.empty()) return Destination::Empty;

  const std::string plan_path = join_path(dst, job.file_name);
  if (!is_regular_file(plan_path)) {
    std::sort(entries.begin(), entries.end());
    throw InputError(dst + ": is not empty (it holds " + io::quote_name(entries.front()) + ") and is not an fp4kit " +
                     name_of_job + " output; refusing to overwrite it: choose an empty or new directory");
  }
  nlohmann::json stored;
  try {
    stored = io::parse_strict_json(read_text_file(plan_path), plan_path);
  } catch (const InputError& e) {
    throw InputError(std::string(e.what()) + " (not a " + name_of_job +
                     " plan this fp4kit can read: choose an empty directory)");
  }
  const std::string difference = manifest_difference(job, stored, planned);
  if (!difference.empty())
    throw InputError(dst + ": holds an fp4kit " + name_of_job + " of another source or with other options (" +
                     difference + "); refusing to overwrite it: choose an empty or new directory");
  const bool complete = stored.is_object() && stored.value("complete", false) == true;
  if (!resume && complete)
    throw InputError(dst + ": already holds a finished " + name_of_job +
                     " of this source; add --resume to check and finish it again, or choose an empty directory");
  if (!resume)
    throw InputError(dst + ": holds an unfinished " + name_of_job +
                     " of this source (was it killed?); add --resume to continue it, or choose an empty directory");
  return complete ? Destination::Finished : Destination::Unfinished;
}

void prepare_destination(const std::string& dst, const JobPlanFile& job, nlohmann::json manifest) {
  std::error_code ec;
  fs::create_directories(dst, ec);
  if (ec) throw Error(dst + ": cannot create the directory: " + ec.message());
  remove_temporaries(dst);
  manifest["complete"] = false;
  io::write_file_atomic(join_path(dst, job.file_name), manifest.dump(2) + "\n");
}

void finish_destination(const std::string& dst, const JobPlanFile& job, nlohmann::json manifest) {
  manifest["complete"] = true;
  io::write_file_atomic(join_path(dst, job.file_name), manifest.dump(2) + "\n");
}

bool shard_is_finished(const std::string& path, const std::vector<const io::TensorInfo*>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  if (!is_regular_file(path)) return false;
  try {
    const io::SafetensorsFile file = io::SafetensorsFile::open(path);
    if (file.header().metadata != metadata || file.tensors().size() != tensors.size()) return false;
    uint64_t data_end = 0;
    for (const io::TensorInfo* want : tensors) {
      const io::TensorInfo* got = file.find(want->name);
      if (!got || got->dtype != want->dtype || got->shape != want->shape) return false;
      data_end = std::max(data_end, got->end);
    }
    return file.file_size() == file.header().data_offset + data_end;
  } catch (const InputError&) {
    return false;
  }
}

void drop_written_pages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void copy_file_atomically(const std::string& from, const std::string& to) {
  const int fd = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(from + ": cannot open: " + errno_text(errno));
  try {
    io::AtomicFile out(to);
    std::vector<std::byte> buffer(1 << 20);
    for (;;) {
      const ssize_t n = ::read(fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Error(from + ": cannot read: " + errno_text(errno));
      if (n == 0) break;
      out.write(std::span(buffer).first(static_cast<size_t>(n)));
    }
    out.commit();
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

std::optional<unsigned> crash_after_shards() {
  const char* value = std::getenv(kCrashAfterShardsEnv);
  if (!value || !*value) return std::nullopt;
  char* end = nullptr;
  const unsigned long n = std::strtoul(value, &end, 10);
  if (*end != '\0' || n == 0) return std::nullopt;
  return static_cast<unsigned>(n);
}

}  // namespace fp4kit
