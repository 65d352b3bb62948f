#include "calib/calibrate.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "calib/model_fingerprint.h"
#include "calib/xtx_full_file.h"
#include "calib/xtx_full_observer.h"
#include "calib/xtx_observer.h"
#include "convert/fingerprint.h"
#include "engine/engine.h"
#include "engine/layer_runner.h"
#include "base/parallel.h"
#include "io/atomic_file.h"
#include "io/checkpoint_index.h"
#include "io/safetensors_file.h"
#include "io/safetensors_writer.h"

namespace fp4kit {

namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kHidden = "hidden.safetensors";
constexpr double kCheapStateSeconds = 1.0;  // streams saved after every layer when a save takes less
constexpr double kStateWorkPerCost = 10.0;  // else: seconds of work between saves per second a save takes
constexpr const char* kStateFormat = "fp4kit-calibrate-state-1";

std::string layer_file_name(int64_t layer, const char* what = "amax") {
  std::string n = std::to_string(layer);
  while (n.size() < 3) n.insert(n.begin(), '0');
  return std::string(what) + "-layer-" + n + ".safetensors";
}

std::string xtx_layer_file(int64_t layer) { return layer_file_name(layer, "xtx"); }

// A state file of this run: its "fingerprint" metadata must be the run's.
void require_state_fingerprint(const io::SafetensorsFile& f, const std::string& path, const std::string& fingerprint) {
  const auto& meta = f.header().metadata;
  const auto fp = meta.find("fingerprint");
  if (fp == meta.end() || fp->second != fingerprint)
    throw InputError(path + ": calibration state of another run; pass --force to start over");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot read");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// What a resumed run must share with the interrupted one: the model (config and shard sizes), the
// ids, and every option that changes a value.
std::string run_fingerprint(const std::string& model_dir, const CalibrationBatch& b, const CalibrateOptions& o) {
  Fingerprint f;
  f.add(kStateFormat);
  add_checkpoint_identity(f, model_dir);
  f.add(static_cast<uint64_t>(b.batch));
  f.add(static_cast<uint64_t>(b.seq));
  f.add_bytes(std::as_bytes(std::span(b.ids)));
  f.add(o.all_experts ? "all-experts" : "routed");
  f.add(w2_input_name(o.w2_input));
  if (o.device != "cpu") f.add("device " + o.device);  // CPU fingerprints stay what they were
  return f.hex();
}

void save_hidden(const std::string& path, const std::vector<float>& hidden, int64_t tokens, int64_t hc, int64_t width,
                 int64_t after_layer, const std::string& fingerprint) {
  io::SafetensorsWriter w(path);
  w.set_metadata({{"after_layer", std::to_string(after_layer)}, {"fingerprint", fingerprint}});
  w.declare("hidden", DType::F32, {tokens, hc, width});
  w.begin();
  w.write("hidden", std::as_bytes(std::span(hidden)));
  w.commit();
}

// The layer the saved streams follow (and the streams), or -1 when there is none to resume from.
int64_t load_hidden(const std::string& path, std::vector<float>& hidden, size_t values, const std::string& fingerprint) {
  if (!fs::exists(path)) return -1;
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const auto& meta = f.header().metadata;
  const auto fp = meta.find("fingerprint"), after = meta.find("after_layer");
  if (fp == meta.end() || after == meta.end() || fp->second != fingerprint)
    throw InputError(path + ": calibration state of another model, batch or option set; remove it or pass --force");
  const io::TensorInfo& t = f.at("hidden");
  if (t.dtype != DType::F32 || t.nbytes() != values * sizeof(float))
    throw InputError(path + ": tensor 'hidden' does not fit this batch; remove the state or pass --force");
  hidden.resize(values);
  f.read(t, std::as_writable_bytes(std::span(hidden)));
  return std::stoll(after->second);
}

void write_manifest(const std::string& dir, const std::string& fingerprint, const std::string& model_dir,
                    const CalibrationBatch& b, const CalibrateOptions& o) {
  nlohmann::json j = {{"format", kStateFormat}, {"fingerprint", fingerprint}, {"model", model_dir},
                      {"batch", b.batch},       {"seq", b.seq},               {"all_experts", o.all_experts},
                      {"w2_input", std::string(w2_input_name(o.w2_input))}};
  if (!o.hessian_path.empty()) j["hessian"] = true;  // absent: a run without XᵀX statistics
  if (o.hessian_full) j["hessian_mode"] = "full";   // absent: the diagonal blocks
  io::AtomicFile file(dir + "/" + kManifest);
  file.write(j.dump(2) + "\n");
  file.commit();
}

void crash_if_asked(int64_t layers_published) {
  const char* v = std::getenv(kCalibrateCrashAfterLayersEnv);
  if (v && std::atoll(v) == layers_published) _exit(137);
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

std::vector<int64_t> split_ids(const std::string& s) {
  std::vector<int64_t> out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t j = s.find(',', i);
    out.push_back(std::stoll(s.substr(i, j - i)));
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return out;
}

// The XᵀX file of a finished run, asked for again with --resume.
void require_finished_xtx(const std::string& path, const std::string& fingerprint) {
  if (!fs::exists(path))
    throw InputError(path + ": missing, and the calibration finished without --hessian; pass --force to run it again");
  const io::SafetensorsFile f = io::SafetensorsFile::open(path);
  const auto fp = f.header().metadata.find("fingerprint");
  if (fp == f.header().metadata.end() || fp->second != fingerprint)
    throw InputError(path + ": exists and was made from another model, batch or option set; pass --force to replace it");
}

std::string xtx_full_state_file(int64_t layer) { return layer_file_name(layer, "xtx-full"); }

std::string full_index_path(const std::string& dir) { return (fs::path(dir) / std::string(kXtxFullIndex)).string(); }

// The full statistics directory of a finished run, asked for again with --resume.
void require_finished_xtx_full(const std::string& dir, const std::string& fingerprint) {
  if (!fs::exists(full_index_path(dir)))
    throw InputError(dir + ": no " + std::string(kXtxFullIndex) +
                     ", and the calibration finished without --hessian-mode full; pass --force to run it again");
  if (XtxFullStatistics::open(dir).fingerprint() != fingerprint)
    throw InputError(dir + ": exists and was made from another model, batch or option set; pass --force to replace it");
}

// Makes room for a full statistics directory: refused when something is there (unless force or
// resume); with force, only what a run writes there is removed.
void prepare_xtx_full_dir(const std::string& dir, bool force, bool resume) {
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir)) {
    if (!force) throw InputError(dir + ": exists and is not a directory; pass --force to replace it");
    fs::remove(dir);
    return;
  }
  if (!force) {
    if (!resume && !fs::is_empty(dir)) throw InputError(dir + ": exists and is not empty; pass --force to replace it");
    return;
  }
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name == kXtxFullIndex || (name.starts_with("layer-") && name.ends_with(".safetensors"))) fs::remove(e.path());
  }
}

// Moves the state's layer files into the statistics directory (a copy across file systems) and
// writes its index last; the number of modules. A layer file already moved by a killed run must be of this run.
size_t publish_xtx_full(const std::string& state_dir, const std::string& dir, int64_t layers,
                      const std::map<std::string, std::string>& metadata, const std::string& fingerprint) {
  fs::create_directories(dir);
  nlohmann::json modules = nlohmann::json::object();
  for (int64_t layer = 0; layer < layers; ++layer) {
    const fs::path from = fs::path(state_dir) / xtx_full_state_file(layer);
    const fs::path to = fs::path(dir) / xtx_full_layer_file(layer);
    if (fs::exists(from)) {
      std::error_code ec;
      fs::rename(from, to, ec);
      if (ec) {
        fs::copy_file(from, to, fs::copy_options::overwrite_existing);
        fs::remove(from);
      }
    }
    const io::SafetensorsFile f = io::SafetensorsFile::open(to.string());
    require_state_fingerprint(f, to.string(), fingerprint);
    for (const std::string& m : xtx_full_modules(f)) modules[m] = xtx_full_layer_file(layer);
  }
  const size_t count = modules.size();
  nlohmann::json index(metadata);
  index["modules"] = std::move(modules);
  io::AtomicFile file(full_index_path(dir));
  file.write(index.dump(1) + "\n");
  file.commit();
  return count;
}

}  // namespace

std::string calibration_state_dir(const std::string& out_path) { return out_path + ".fp4kit-calib"; }

bool save_streams_after_layer(bool last_layer, double last_save_seconds, double work_since_save_seconds) {
  if (last_layer) return false;
  return last_save_seconds < kCheapStateSeconds || work_since_save_seconds >= kStateWorkPerCost * last_save_seconds;
}

CalibrateReport calibrate(const std::string& model_dir, const CalibrationBatch& batch, const std::string& out_path,
                          const CalibrateOptions& options, const CalibrateProgressFn& progress) {
  const auto run_start = std::chrono::steady_clock::now();
  if (batch.batch < 1 || batch.seq < 1 || batch.ids.size() != static_cast<size_t>(batch.batch * batch.seq))
    throw InputError("calibration data: " + std::to_string(batch.ids.size()) + " ids do not form " +
                     std::to_string(batch.batch) + " sequences of " + std::to_string(batch.seq) + " tokens");
  const std::string state_dir = calibration_state_dir(out_path);
  const bool want_stats = !options.hessian_path.empty();
  const bool want_xtx = want_stats && !options.hessian_full;
  const bool want_full = want_stats && options.hessian_full;
  if (want_stats && fs::absolute(options.hessian_path) == fs::absolute(out_path))
    throw InputError("--hessian " + options.hessian_path + ": the same file as --out");
  const std::string fingerprint = run_fingerprint(model_dir, batch, options);
  const std::string model_fingerprint = want_full ? calibration_model_fingerprint(model_dir) : "";

  if (fs::exists(out_path) && !options.force) {
    if (!options.resume) throw InputError(out_path + ": exists; pass --force to replace it");
    const io::SafetensorsFile done = io::SafetensorsFile::open(out_path);
    const auto fp = done.header().metadata.find("fingerprint");
    if (fp == done.header().metadata.end() || fp->second != fingerprint)
      throw InputError(out_path + ": exists and was made from another model, batch or option set; pass --force to replace it");
    // Finished by an earlier run, which may have been killed while it removed its per-layer state:
    // finish that cleanup, nothing else to do. Its XᵀX file, if asked for, was published first.
    if (want_xtx) require_finished_xtx(options.hessian_path, fingerprint);
    if (want_full) require_finished_xtx_full(options.hessian_path, fingerprint);
    fs::remove_all(state_dir);
    CalibrateReport done_report;
    done_report.output = out_path;
    done_report.tokens = batch.batch * batch.seq;
    done_report.entries = done.tensors().size();
    return done_report;
  }
  if (want_xtx && fs::exists(options.hessian_path) && !options.force && !options.resume)
    throw InputError(options.hessian_path + ": exists; pass --force to replace it");
  if (want_full) prepare_xtx_full_dir(options.hessian_path, options.force, options.resume);
  if (options.force) {
    fs::remove_all(state_dir);
  } else if (fs::exists(state_dir) && !options.resume) {
    throw InputError(state_dir + ": an interrupted calibration is there; pass --resume to continue it or --force to start over");
  }
  fs::create_directories(state_dir);

  AmaxObserver observer(options.w2_input);
  XtxObserver xtx_observer(options.w2_input, options.threads ? options.threads : default_threads());
  XtxFullObserver full_observer(options.w2_input, options.threads ? options.threads : default_threads());
  ObserverPair both(observer, xtx_observer);
  ObserverPair with_full(observer, full_observer);
  engine::EngineOptions eo;
  eo.threads = options.threads;
  eo.observer = want_xtx ? static_cast<engine::LinearObserver*>(&both) : want_full ? static_cast<engine::LinearObserver*>(&with_full) : &observer;
  eo.observe_all_experts = options.all_experts;
  const std::unique_ptr<engine::LayerRunner> runner =
      options.runner ? options.runner(model_dir, eo) : engine::make_cpu_runner(model_dir, eo);
  const engine::ModelConfig& cfg = runner->config();
  const int64_t layers = cfg.layers();

  CalibrateReport report;
  report.output = out_path;
  report.tokens = batch.batch * batch.seq;
  report.layers = layers;

  runner->embed(batch.ids, batch.batch);
  const size_t stream_values = static_cast<size_t>(batch.batch * batch.seq * cfg.hc() * cfg.hidden());
  int64_t first = 0;
  if (options.resume) {
    const std::string manifest = state_dir + "/" + kManifest;
    if (fs::exists(manifest)) {
      const auto j = nlohmann::json::parse(read_text(manifest), nullptr, false);
      if (j.is_discarded() || j.value("fingerprint", "") != fingerprint)
        throw InputError(state_dir + ": calibration state of another model, batch or option set; pass --force to start over");
      if (j.value("hessian", false) != want_stats)
        throw InputError(state_dir + ": the interrupted calibration was started " +
                         (want_stats ? "without" : "with") + " --hessian; resume it " +
                         (want_stats ? "without" : "with") + " --hessian, or pass --force to start over");
      if (want_stats && (j.value("hessian_mode", "blocks") == "full") != want_full)
        throw InputError(state_dir + ": the interrupted calibration was started with --hessian-mode " +
                         (want_full ? "blocks" : "full") + "; resume it with that mode, or pass --force to start over");
    }
    std::vector<float> saved;
    first = load_hidden(state_dir + "/" + kHidden, saved, stream_values, fingerprint) + 1;
    if (first > 0) runner->set_hidden(saved, first - 1);
  }
  write_manifest(state_dir, fingerprint, model_dir, batch, options);

  AmaxTable all;
  XtxTable all_xtx;
  double save_cost = 0;  // seconds the last save of the streams took
  auto last_save_end = std::chrono::steady_clock::now();
  for (int64_t layer = 0; layer < layers; ++layer) {
    CalibrateLayerReport lr;
    lr.layer = layer;
    if (layer < first) {
      const std::string path = state_dir + "/" + layer_file_name(layer);
      const io::SafetensorsFile f = io::SafetensorsFile::open(path);
      const auto& meta = f.header().metadata;
      const auto fp = meta.find("fingerprint");
      if (fp == meta.end() || fp->second != fingerprint)
        throw InputError(path + ": calibration state of another run; pass --force to start over");
      const AmaxTable t = AmaxTable::load(path);
      all.merge(t);
      if (want_xtx) {
        const std::string xtx_path = state_dir + "/" + xtx_layer_file(layer);
        require_state_fingerprint(io::SafetensorsFile::open(xtx_path), xtx_path, fingerprint);
        all_xtx.merge(XtxTable::load(xtx_path));
      }
      if (want_full) {
        const std::string full_path = state_dir + "/" + xtx_full_state_file(layer);
        require_state_fingerprint(io::SafetensorsFile::open(full_path), full_path, fingerprint);
      }
      lr.resumed = true;
      lr.entries = t.size();
      const auto missing = meta.find("experts_without_tokens");
      if (missing != meta.end() && !missing->second.empty()) lr.experts_without_tokens = split_ids(missing->second);
      report.per_layer.push_back(lr);
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    observer.clear();
    xtx_observer.clear();
    std::optional<XtxFullLayerWriter> full_writer;
    if (want_full) full_writer.emplace(state_dir + "/" + xtx_full_state_file(layer));
    full_observer.set_layer(full_writer ? &*full_writer : nullptr, cfg.base.o_groups);
    runner->run_layer(layer);
    // A pass on the GPU kept the sums on the device during the layer: they come back here.
    xtx_observer.end_layer();
    full_observer.end_layer();
    full_observer.set_layer(nullptr, cfg.base.o_groups);
    lr.timing = runner->last_timing();
    const auto t_state = std::chrono::steady_clock::now();
    const std::string bad = observer.table().first_non_finite();
    if (!bad.empty())
      throw InputError(model_dir + ": non-finite input to " + bad + " in layer " + std::to_string(layer));
    for (int64_t e = 0; e < cfg.base.n_routed_experts; ++e)
      if (!observer.expert_rows().count("layers." + std::to_string(layer) + ".ffn.experts." + std::to_string(e)))
        lr.experts_without_tokens.push_back(e);
    lr.entries = observer.table().size();
    // Publish the layer's values first, then the streams that follow it: a crash in between re-runs
    // this layer and rewrites the same values. The streams (tokens x hc x hidden F32: 7.5 GB for 64k
    // tokens of V4 Pro) are saved when that is cheap, else once the work since the last save is ten
    // times what a save costs, so that saving stays within a tenth of the run and a kill loses at
    // most that much work; never after the last layer (the output follows at once).
    if (want_xtx)
      xtx_observer.table().save(state_dir + "/" + xtx_layer_file(layer),
                                {{"fingerprint", fingerprint}, {"layer", std::to_string(layer)}});
    if (want_full) {
      full_writer->finish({{"format", std::string(kXtxFullFormat)},
                           {"fingerprint", fingerprint},
                           {"model", model_fingerprint},
                           {"layer", std::to_string(layer)}});
    }
    observer.table().save(state_dir + "/" + layer_file_name(layer),
                          {{"fingerprint", fingerprint}, {"layer", std::to_string(layer)},
                           {"experts_without_tokens", join(lr.experts_without_tokens)}});
    const double since_save = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_save_end).count();
    if (save_streams_after_layer(layer + 1 == layers, save_cost, since_save)) {
      const auto t_save = std::chrono::steady_clock::now();
      save_hidden(state_dir + "/" + kHidden, runner->hidden(), batch.batch * batch.seq, cfg.hc(), cfg.hidden(), layer,
                  fingerprint);
      last_save_end = std::chrono::steady_clock::now();
      save_cost = std::chrono::duration<double>(last_save_end - t_save).count();
      lr.state_saved = true;
    }
    all.merge(observer.table());
    if (want_xtx) all_xtx.merge(xtx_observer.table());
    const auto t_end = std::chrono::steady_clock::now();
    lr.seconds = std::chrono::duration<double>(t_end - t0).count();
    lr.state_seconds = std::chrono::duration<double>(t_end - t_state).count();
    report.per_layer.push_back(lr);
    if (progress) progress(layer + 1, layers, lr);
    crash_if_asked(layer + 1 - first);
  }

  std::map<std::string, std::string> meta = {
      {"fingerprint", fingerprint},
      {"producer", "fp4kit 0.1.0 calibrate"},
      {"algorithm", "max"},
      {"samples", std::to_string(batch.batch)},
      {"seq_len", std::to_string(batch.seq)},
      {"all_experts", options.all_experts ? "true" : "false"},
      {"w2_input", std::string(w2_input_name(options.w2_input))},
      {"data", batch.source}};
  // The XᵀX file first: an amax file under its final name means the run finished.
  if (want_xtx) {
    std::map<std::string, std::string> xtx_meta = meta;
    xtx_meta["algorithm"] = "xtx-diagonal-blocks";
    xtx_meta["format"] = std::string(kXtxFormat);
    xtx_meta["model"] = calibration_model_fingerprint(model_dir);
    all_xtx.save(options.hessian_path, xtx_meta);
    report.xtx_entries = all_xtx.size();
  }
  if (want_full) {
    std::map<std::string, std::string> full_meta = meta;
    full_meta["algorithm"] = "xtx-full";
    full_meta["format"] = std::string(kXtxFullFormat);
    full_meta["model"] = model_fingerprint;
    report.xtx_entries = publish_xtx_full(state_dir, options.hessian_path, layers, full_meta, fingerprint);
  }
  all.save(out_path, meta);
  fs::remove_all(state_dir);
  report.entries = all.size();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  return report;
}

}  // namespace fp4kit
