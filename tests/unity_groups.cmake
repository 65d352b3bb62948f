# The test files compiled together, one unity source per group (fp4kit_tests has UNITY_BUILD_MODE
# GROUP): the headers, gtest's and nlohmann::json's templates and the inline code that every test
# file instantiates are compiled once per group instead of once per file. Measured on the 2-core
# machine, all test files of the Release build (g++ -O1): 67 s instead of 121 s (122 CPU s instead
# of 221). A file in no group compiles alone, as every file did before; tests/cuda is left out.
#
# Files in one group share one translation unit, so what each declares at namespace scope (helpers
# in its anonymous namespace, using-declarations, aliases, and the names of the test headers it
# includes) is visible to the others. Two files share a group only where neither declares a name
# that the other declares or uses unqualified, so that each file's names still resolve to what
# they did alone. scripts/check-unity-groups.py BUILD_DIR proves it on a clang build: every
# function of every grouped file calls the same functions, compiled in its group, as compiled
# alone. The groups of the files that the aarch64 stage builds come first
# (scripts/test-aarch64.sh's FP4KIT_TEST_FILES_REGEX), so that build compiles them together too.
# A new test file joins a group only with that check passing; if a group stops compiling after an
# edit (a redefinition, an ambiguous name), take the file out of its group.

set_source_files_properties(
  tests/convert/convert_families_test.cpp
  tests/convert/convert_oracle_test.cpp
  tests/convert/dequant_test.cpp
  tests/engine/engine_reference_test.cpp
  tests/engine/matmul_test.cpp
  tests/formats/codecs_test.cpp
  tests/formats/isa_test.cpp
  tests/formats/nvfp4_oracle_test.cpp
  PROPERTIES UNITY_GROUP tests_1)

set_source_files_properties(
  tests/formats/deepseek_oracle_test.cpp
  tests/formats/fp8_block_kernels_test.cpp
  tests/formats/nvfp4_activation_test.cpp
  tests/synth/synth_random_test.cpp
  PROPERTIES UNITY_GROUP tests_2)

set_source_files_properties(
  tests/formats/mxfp4_kernels_test.cpp
  tests/formats/nvfp4_gptq_test.cpp
  PROPERTIES UNITY_GROUP tests_3)

set_source_files_properties(
  tests/formats/nvfp4_hessian_sweep_test.cpp
  tests/formats/scale_search_golden_test.cpp
  tests/verify/tensor_error_test.cpp
  PROPERTIES UNITY_GROUP tests_4)

set_source_files_properties(
  tests/base/cholesky_test.cpp
  tests/calib/amax_table_test.cpp
  tests/calib/calib_data_test.cpp
  tests/calib/calibrate_cli_test.cpp
  tests/calib/calibrate_test.cpp
  tests/calib/tokenize_cli_test.cpp
  tests/calib/tokenizer_test.cpp
  tests/calib/unicode_test.cpp
  PROPERTIES UNITY_GROUP tests_5)

set_source_files_properties(
  tests/calib/calibrate_xtx_full_test.cpp
  tests/calib/tokenizer_reference_test.cpp
  tests/cli/quantize_tensors_cli_test.cpp
  tests/convert/convert_gptq_test.cpp
  tests/convert/convert_job_test.cpp
  tests/convert/convert_recipes_test.cpp
  tests/engine/engine_observer_test.cpp
  tests/engine/gpu_memory_option_test.cpp
  PROPERTIES UNITY_GROUP tests_6)

set_source_files_properties(
  tests/calib/calibrate_xtx_test.cpp
  tests/cli/quantize_tensors_device_test.cpp
  tests/cli/quantize_tensors_scales_test.cpp
  tests/convert/convert_hessian_test.cpp
  tests/convert/convert_scales_test.cpp
  tests/engine/engine_cache_test.cpp
  tests/engine/engine_long_reference_test.cpp
  tests/engine/layer_groups_test.cpp
  PROPERTIES UNITY_GROUP tests_7)

set_source_files_properties(
  tests/convert/random_kill_test.cpp
  tests/engine/engine_bad_input_test.cpp
  tests/engine/engine_cli_test.cpp
  tests/engine/logit_compare_test.cpp
  tests/eval/eval_cli_test.cpp
  tests/eval/eval_runner_test.cpp
  tests/eval/eval_statistics_test.cpp
  tests/eval/eval_verdict_test.cpp
  PROPERTIES UNITY_GROUP tests_8)

set_source_files_properties(
  tests/convert/range_copy_test.cpp
  tests/eval/eval_html_test.cpp
  tests/inspect/inspect_test.cpp
  tests/io/atomic_file_test.cpp
  tests/io/safetensors_file_test.cpp
  tests/io/safetensors_writer_test.cpp
  tests/io/tensor_info_test.cpp
  tests/models/quantized_weights_test.cpp
  PROPERTIES UNITY_GROUP tests_9)

set_source_files_properties(
  tests/io/checkpoint_index_test.cpp
  tests/io/shard_plan_test.cpp
  tests/serve/chat_template_check_test.cpp
  tests/serve/client_probe_test.cpp
  tests/serve/serve_request_test.cpp
  tests/synth/synth_cli_test.cpp
  tests/synth/synth_weights_test.cpp
  PROPERTIES UNITY_GROUP tests_10)

set_source_files_properties(
  tests/io/direct_io_test.cpp
  tests/io/tensor_prefetcher_test.cpp
  tests/models/deepseek_v4_test.cpp
  tests/models/stored_weight_test.cpp
  tests/serve/sampling_test.cpp
  tests/serve/serve_engine_test.cpp
  tests/serve/serve_text_test.cpp
  tests/serve/tool_calls_test.cpp
  PROPERTIES UNITY_GROUP tests_11)

set_source_files_properties(
  tests/synth/synth_checkpoint_test.cpp
  tests/synth/synth_hollow_writer_test.cpp
  tests/verify/verify_checkpoints_test.cpp
  tests/verify/verify_engine_contract_families_test.cpp
  tests/verify/verify_html_test.cpp
  tests/verify/verify_mutation_test.cpp
  PROPERTIES UNITY_GROUP tests_12)
