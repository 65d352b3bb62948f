#include "io/checkpoint_index.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/atomic_file.h"
#include "io/safetensors_writer.h"
#include "io_test_util.h"
#include "test_data.h"

namespace fp4kit::io {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;

const std::string kTinyDir = fp4kit::testing::test_data("dsv4-tiny");

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A one-shard checkpoint file holding U8 tensors of 4 bytes each.
void write_shard(const std::string& path, const std::vector<std::string>& names) {
  SafetensorsWriter w(path);
  for (const auto& name : names) w.declare(name, DType::U8, {4});
  w.begin();
  w.append(std::vector<std::byte>(4 * names.size(), std::byte{9}));
  w.commit();
}

TEST(CheckpointIndex, LoadsTheDsv4TinyIndex) {
  const CheckpointIndex index = CheckpointIndex::load(kTinyDir + "/model.safetensors.index.json");
  EXPECT_EQ(index.weight_map.size(), 427u);
  EXPECT_EQ(index.metadata.at("total_size"), 4898438);
  EXPECT_EQ(index.weight_map.at("layers.1.attn.wq_a.weight"), "model-00001-of-00003.safetensors");
  EXPECT_EQ(index.shard_files(), (std::vector<std::string>{"model-00001-of-00003.safetensors",
                                                           "model-00002-of-00003.safetensors",
                                                           "model-00003-of-00003.safetensors"}));
}

TEST(CheckpointIndex, SaveLoadRoundTripWithStableFormatting) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("index-roundtrip");
  CheckpointIndex index;
  index.metadata["total_size"] = 24;
  index.weight_map = {{"z.weight", "b.safetensors"}, {"a.weight", "a.safetensors"}, {"a.scale", "a.safetensors"}};
  index.save(dir + "/model.safetensors.index.json");
  EXPECT_EQ(slurp(dir + "/model.safetensors.index.json"),
            "{\n"
            "  \"metadata\": {\n"
            "    \"total_size\": 24\n"
            "  },\n"
            "  \"weight_map\": {\n"
            "    \"a.scale\": \"a.safetensors\",\n"
            "    \"a.weight\": \"a.safetensors\",\n"
            "    \"z.weight\": \"b.safetensors\"\n"
            "  }\n"
            "}\n");
  const CheckpointIndex loaded = CheckpointIndex::load(dir + "/model.safetensors.index.json");
  EXPECT_EQ(loaded.weight_map, index.weight_map);
  EXPECT_EQ(loaded.metadata, index.metadata);
  EXPECT_EQ(loaded.shard_files(), (std::vector<std::string>{"a.safetensors", "b.safetensors"}));

  // The real index survives a load/save/load cycle unchanged.
  const CheckpointIndex tiny = CheckpointIndex::load(kTinyDir + "/model.safetensors.index.json");
  tiny.save(dir + "/tiny.json");
  const CheckpointIndex again = CheckpointIndex::load(dir + "/tiny.json");
  EXPECT_EQ(again.weight_map, tiny.weight_map);
  EXPECT_EQ(again.metadata, tiny.metadata);
}

TEST(CheckpointIndex, RejectsMalformedIndexes) {
  const std::string path = fp4kit::testing::fresh_temp_dir("index-bad") + "/model.safetensors.index.json";
  auto expect_bad = [&](std::string_view text, std::initializer_list<std::string_view> needles) {
    write_file_atomic(path, text);
    std::vector<std::string_view> all = {path};
    all.insert(all.end(), needles.begin(), needles.end());
    try {
      CheckpointIndex::load(path);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const InputError& e) {
      for (std::string_view needle : all)
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << needle << " missing from: " << e.what();
    }
  };
  expect_bad("[1]", {"not an object"});
  expect_bad("{\"weight_map\":", {"not valid JSON"});
  expect_bad("{}", {"no \"weight_map\""});
  expect_bad(R"({"weight_map":[]})", {"\"weight_map\"", "not an object"});
  expect_bad(R"({"weight_map":{"a":1}})", {"tensor 'a'", "not a string"});
  expect_bad(R"({"weight_map":{"a":"../evil.safetensors"}})", {"tensor 'a'", "'../evil.safetensors'", "plain file name"});
  expect_bad(R"({"weight_map":{"a":"/etc/passwd"}})", {"tensor 'a'", "plain file name"});
  expect_bad(R"({"weight_map":{"a":".."}})", {"tensor 'a'", "plain file name"});
  expect_bad(R"({"weight_map":{"a":""}})", {"tensor 'a'", "plain file name"});
  expect_bad(R"({"weight_map":{"":"x.safetensors"}})", {"empty tensor name"});
  expect_bad(R"({"weight_map":{"a":"x.safetensors","a":"y.safetensors"}})", {"key 'weight_map': key 'a' appears twice"});
  expect_bad(R"({"metadata":5,"weight_map":{}})", {"\"metadata\"", "not an object"});
  expect_error([&] { CheckpointIndex::load(path + ".absent"); }, {path + ".absent", "cannot open"});
}

TEST(Checkpoint, FindsEveryDsv4TinyTensorThroughTheIndex) {
  const Checkpoint ckpt = Checkpoint::open(kTinyDir);
  EXPECT_TRUE(ckpt.has_index());
  EXPECT_EQ(ckpt.dir(), kTinyDir);
  EXPECT_EQ(ckpt.shard_files().size(), 3u);
  for (const auto& [name, file] : ckpt.index().weight_map) {
    const auto [shard, info] = ckpt.find(name);
    ASSERT_NE(shard, nullptr) << name;
    ASSERT_NE(info, nullptr) << name;
    EXPECT_EQ(fs::path(shard->path()).filename(), file);
    EXPECT_EQ(info->name, name);
    EXPECT_EQ(shard, &ckpt.shard(file));  // opened once, cached
  }
  const auto [shard, info] = ckpt.find("layers.1.attn.wq_a.weight");
  EXPECT_EQ(info->dtype, DType::F8_E4M3);
  EXPECT_EQ(info->shape, (std::vector<int64_t>{128, 128}));
  EXPECT_EQ(ckpt.find("no.such.tensor"), (std::pair<const SafetensorsFile*, const TensorInfo*>{nullptr, nullptr}));
}

TEST(Checkpoint, IndexPointingToAMissingShardNamesIndexAndTensor) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("ckpt-missing-shard");
  write_shard(dir + "/a.safetensors", {"present"});
  CheckpointIndex index;
  index.weight_map = {{"present", "a.safetensors"}, {"lost", "gone.safetensors"}, {"phantom", "a.safetensors"}};
  index.save(dir + "/model.safetensors.index.json");
  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_NE(ckpt.find("present").second, nullptr);
  expect_error([&] { ckpt.find("lost"); },
               {dir + "/model.safetensors.index.json", "tensor 'lost'", "'gone.safetensors'", "No such file"});
  expect_error([&] { ckpt.find("phantom"); },
               {dir + "/model.safetensors.index.json", "tensor 'phantom'", "'a.safetensors'", "no such tensor"});
}

TEST(Checkpoint, OpensASingleFileModel) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("ckpt-single");
  write_shard(dir + "/model.safetensors", {"a", "b"});
  write_shard(dir + "/other.safetensors", {"c"});  // ignored: model.safetensors wins
  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_FALSE(ckpt.has_index());
  EXPECT_TRUE(ckpt.index().weight_map.empty());
  EXPECT_EQ(ckpt.shard_files(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(ckpt.find("b").second->name, "b");
  EXPECT_EQ(ckpt.find("c").first, nullptr);
}

TEST(Checkpoint, OpensShardsWithoutAnIndex) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("ckpt-noindex");
  write_shard(dir + "/part-2.safetensors", {"x", "y"});
  write_shard(dir + "/part-1.safetensors", {"w"});
  write_file_atomic(dir + "/.hidden.safetensors", "ignored");
  write_file_atomic(dir + "/notes.txt", "ignored");
  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_EQ(ckpt.shard_files(), (std::vector<std::string>{"part-1.safetensors", "part-2.safetensors"}));
  EXPECT_EQ(fs::path(ckpt.find("y").first->path()).filename(), "part-2.safetensors");
  EXPECT_EQ(fs::path(ckpt.find("w").first->path()).filename(), "part-1.safetensors");
  EXPECT_EQ(ckpt.find("z").second, nullptr);
}

TEST(Checkpoint, RejectsDuplicateTensorsAcrossUnindexedShards) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("ckpt-dup");
  write_shard(dir + "/a.safetensors", {"same"});
  write_shard(dir + "/b.safetensors", {"same"});
  const Checkpoint ckpt = Checkpoint::open(dir);
  expect_error([&] { ckpt.find("same"); }, {dir, "tensor 'same'", "a.safetensors", "b.safetensors"});
}

TEST(Checkpoint, RejectsDirectoriesWithoutACheckpoint) {
  const std::string dir = fp4kit::testing::fresh_temp_dir("ckpt-empty");
  expect_error([&] { Checkpoint::open(dir); }, {dir, "no model.safetensors.index.json"});
  expect_error([&] { Checkpoint::open(dir + "/absent"); }, {dir + "/absent", "not a directory"});
  write_file_atomic(dir + "/model.safetensors.index.json", "{");
  expect_error([&] { Checkpoint::open(dir); }, {dir + "/model.safetensors.index.json", "JSON"});
}

TEST(Checkpoint, IsMovable) {
  Checkpoint a = Checkpoint::open(kTinyDir);
  const SafetensorsFile* shard = a.find("embed.weight").first;
  Checkpoint b = std::move(a);
  EXPECT_EQ(b.find("embed.weight").first, shard);
}

}  // namespace
}  // namespace fp4kit::io
