# Cross-compile the runtime and lr-run for 64-bit Android with clang-22 (no NDK toolchain wrapper).
#   cmake -S . -B build-android -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-android.cmake \
#         -DLRC_ANDROID_SYSROOT=$NDK/toolchains/llvm/prebuilt/linux-x86_64/sysroot
# The runtime and lr-run include and link bionic's libc, so they need bionic's headers and libraries:
# the sysroot of an Android NDK. Without one this file stops with an error. (Model shared objects
# need no sysroot: lrc links those against stub libc.so/libm.so, see docs/targets.md.)
set(CMAKE_SYSTEM_NAME Linux)  # "Android" would make CMake go looking for a full NDK
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(LRC_ANDROID_API 24 CACHE STRING "Android API level (24 = Android 7.0)")
set(LRC_MCPU cortex-a76 CACHE STRING "-mcpu (cortex-a76: Galaxy S10 class)")
set(LRC_ANDROID_SYSROOT "$ENV{LRC_ANDROID_SYSROOT}" CACHE PATH "bionic sysroot (an NDK's .../sysroot)")
if(NOT LRC_ANDROID_SYSROOT OR NOT EXISTS "${LRC_ANDROID_SYSROOT}/usr/include/stdio.h")
  message(FATAL_ERROR "aarch64-linux-android.cmake: set LRC_ANDROID_SYSROOT to an Android NDK sysroot "
                      "(a directory with usr/include/stdio.h and usr/lib/aarch64-linux-android/); "
                      "this machine has no bionic headers or libraries, so the runtime cannot be built "
                      "for Android without one")
endif()
set(CMAKE_SYSROOT "${LRC_ANDROID_SYSROOT}")
set(CMAKE_C_COMPILER clang-22)
set(CMAKE_C_COMPILER_TARGET aarch64-linux-android${LRC_ANDROID_API})
set(CMAKE_C_FLAGS_INIT "-mcpu=${LRC_MCPU} -fPIE")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-fuse-ld=lld -pie")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
