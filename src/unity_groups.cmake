# The library's C++ sources compile in unity groups, one translation unit per directory of src/
# (fp4kit_lib, its fuzzed part, fp4kit_gpu_engine, and the .cpp files of fp4kit_cuda; the .cu files
# and the CLI are not grouped here): the standard library, nlohmann::json and the module headers
# that every file of a directory includes are compiled once per directory instead of once per
# file. The library is compiled three times by scripts/test.sh (Release, ASan, aarch64).
#
# Files of one group share one translation unit, so what each declares for itself at namespace
# scope (its anonymous namespace, statics, aliases, macros) is visible to the files after it.
# scripts/check-library-unity.py BUILD_DIR checks a configured build in about a second (each stage
# of scripts/test.sh runs it before compiling): every library source compiles once, in a group
# unless it must compile alone, and no member declares or uses a name that another member keeps to
# itself. A new file joins its directory's group; if the check reports a clash, rename the name in
# question. The slower proof, scripts/check-unity-groups.py BUILD_DIR fp4kit_lib fp4kit_lib_fuzzed
# fp4kit_gpu_engine fp4kit_cuda on a clang build, compares every function's calls in its group with
# those compiled alone (as for the test groups).
#
# Alone: the Highway SIMD files (*_simd.cpp include themselves once per SIMD target through
# hwy/foreach_target.h, which one translation unit can do only once), and files with compile flags
# of their own (src/serve/http_server.cpp; src/formats/fp8_block.cpp for GCC 12 on aarch64), which
# CMake's unity build leaves out of their groups.
#
# FP4KIT_LIB_UNITY is ON by default, in the developer build too, so that a developer compiles what
# CI compiles and a clash shows at once; OFF compiles each file alone (a faster rebuild after
# editing one file).
option(FP4KIT_LIB_UNITY "Compile the library's C++ sources in unity groups, one per src/ directory" ON)

foreach(target fp4kit_lib fp4kit_lib_fuzzed fp4kit_gpu_engine fp4kit_cuda)
  if(NOT TARGET ${target})
    continue()
  endif()
  set_target_properties(${target} PROPERTIES UNITY_BUILD ${FP4KIT_LIB_UNITY} UNITY_BUILD_MODE GROUP)
  if(FP4KIT_LIB_UNITY AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # To GCC the members of a unity source are headers, where a class with a member of a type from
    # an anonymous namespace breaks the one-definition rule across files (-Wsubobject-linkage); in a
    # .cpp it does not. The headers themselves are still checked where the tests include them.
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wno-subobject-linkage>)
  endif()
  get_target_property(sources ${target} SOURCES)
  foreach(src ${sources})
    if(NOT src MATCHES "_simd\\.cpp$" AND src MATCHES "/src/([a-z_]+)/[^/]+\\.cpp$")
      set_source_files_properties(${src} PROPERTIES UNITY_GROUP "lib_${CMAKE_MATCH_1}")
    endif()
  endforeach()
endforeach()
