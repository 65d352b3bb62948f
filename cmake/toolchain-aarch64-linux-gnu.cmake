# Cross build for 64-bit Arm Linux on a Debian host with multiarch arm64 packages
# (g++-aarch64-linux-gnu, libfoo-dev:arm64); tests run through qemu-user.
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FP4KIT_AARCH64_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${FP4KIT_AARCH64_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${FP4KIT_AARCH64_TRIPLE}-g++)
# Debian's multiarch directory: find_library/find_package look in /usr/lib/aarch64-linux-gnu (the
# arm64 libraries and their CMake configs) and never in the host's /usr/lib/x86_64-linux-gnu.
# Headers (/usr/include) and arch-independent configs (/usr/share/cmake: CLI11, nlohmann_json)
# are shared by both architectures, so the root stays the host's /.
set(CMAKE_LIBRARY_ARCHITECTURE ${FP4KIT_AARCH64_TRIPLE})
set(CMAKE_FIND_ROOT_PATH /usr/${FP4KIT_AARCH64_TRIPLE} /)
# Programs (bash, jq, node, ...) are the host's; libraries, headers and packages the target's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config (if a find module asks it) reads the arm64 and arch-independent .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${FP4KIT_AARCH64_TRIPLE}/pkgconfig:/usr/share/pkgconfig)

# Test programs run under user-mode emulation (no binfmt_misc needed): gtest_discover_tests and
# add_test prefix their commands with it. The arm64 library packages bring libc6:arm64, whose
# loader (/lib/ld-linux-aarch64.so.1) qemu finds by itself. Not -L /usr/aarch64-linux-gnu there:
# that loader (libc6-arm64-cross) would load libc.so.6 of libc6:arm64, listed in ld.so.cache, and
# the two builds of glibc disagree inside (with Debian 12's packages, pthread_create spins forever).
find_program(FP4KIT_QEMU_AARCH64 qemu-aarch64 REQUIRED)
if(EXISTS /lib/ld-linux-aarch64.so.1)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FP4KIT_QEMU_AARCH64})
else()
  set(CMAKE_CROSSCOMPILING_EMULATOR ${FP4KIT_QEMU_AARCH64} -L /usr/${FP4KIT_AARCH64_TRIPLE})
endif()
