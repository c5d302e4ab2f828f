# PSTRAIN_SANITIZE builds everything with sanitizers: address, undefined, thread, or a
# comma-separated mix such as "address,undefined" (thread excludes the others). .ci/run builds
# the tests this way too (scripts/sanitize.sh).
set(PSTRAIN_SANITIZE "" CACHE STRING
    "Sanitizers to build with: address, undefined, thread, address,undefined, or empty")
if(PSTRAIN_SANITIZE)
  string(REPLACE "," ";" _sanitizers "${PSTRAIN_SANITIZE}")
  foreach(_s IN LISTS _sanitizers)
    if(NOT _s MATCHES "^(address|undefined|thread)$")
      message(FATAL_ERROR "PSTRAIN_SANITIZE: '${_s}' is not address, undefined or thread")
    endif()
  endforeach()
  if("thread" IN_LIST _sanitizers AND NOT PSTRAIN_SANITIZE STREQUAL "thread")
    message(FATAL_ERROR "PSTRAIN_SANITIZE: thread cannot be combined with other sanitizers")
  endif()
  set(_san_flags -fsanitize=${PSTRAIN_SANITIZE})
  if("undefined" IN_LIST _sanitizers)
    list(APPEND _san_flags -fno-sanitize-recover=all)
  endif()
  # GCC's flow analysis misfires on sanitizer-instrumented code (std::regex, std::function:
  # "may be used uninitialized"); the normal build keeps the warning as an error.
  foreach(_flag IN LISTS _san_flags ITEMS -fno-omit-frame-pointer -Wno-maybe-uninitialized)
    add_compile_options($<$<COMPILE_LANGUAGE:CXX>:${_flag}>)
  endforeach()
  add_link_options(${_san_flags})
endif()
