# PSTRAIN_SANITIZE=address|undefined|thread builds everything with that sanitizer
# (.ci/run builds the tests this way too).
set(PSTRAIN_SANITIZE "" CACHE STRING "Sanitizer to build with: address, undefined, thread or empty")
if(PSTRAIN_SANITIZE)
  if(PSTRAIN_SANITIZE STREQUAL "undefined")
    set(_san_flags -fsanitize=undefined -fno-sanitize-recover=all)
  elseif(PSTRAIN_SANITIZE STREQUAL "address" OR PSTRAIN_SANITIZE STREQUAL "thread")
    set(_san_flags -fsanitize=${PSTRAIN_SANITIZE})
  else()
    message(FATAL_ERROR "PSTRAIN_SANITIZE must be address, undefined or thread, "
                        "not '${PSTRAIN_SANITIZE}'")
  endif()
  foreach(_flag IN LISTS _san_flags ITEMS -fno-omit-frame-pointer)
    add_compile_options($<$<COMPILE_LANGUAGE:CXX>:${_flag}>)
  endforeach()
  add_link_options(${_san_flags})
endif()
