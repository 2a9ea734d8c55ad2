# Cross-compile the runtime and lr-run for 64-bit Arm Linux (glibc):
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake && cmake --build build-arm64
# Needs clang-22, lld-22 and Debian's aarch64 C library (gcc-aarch64-linux-gnu pulls it in). On x86
# the result runs under qemu: qemu-aarch64 -L /usr/aarch64-linux-gnu build-arm64/lr-run ARTIFACT
# (CMAKE_CROSSCOMPILING_EMULATOR below does the same for ctest).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(LRC_MCPU cortex-a76 CACHE STRING "-mcpu (cortex-a76: Galaxy S10 class)")
set(CMAKE_C_COMPILER clang-22)
set(CMAKE_C_COMPILER_TARGET aarch64-linux-gnu)
set(CMAKE_C_FLAGS_INIT "-mcpu=${LRC_MCPU}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-fuse-ld=lld")
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
find_program(LRC_QEMU_AARCH64 qemu-aarch64)
if(LRC_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LRC_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
endif()
