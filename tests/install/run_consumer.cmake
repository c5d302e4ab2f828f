# The install test (cmake -P): installs the pstrain build in BUILD_DIR into a fresh prefix under
# WORK_DIR, checks the layout, then configures, builds and runs tests/install/consumer against
# that prefix with find_package(pstrain), and checks what it prints.
# Inputs (-D): BUILD_DIR, WORK_DIR, CONSUMER_DIR, CXX_COMPILER, CMAKE_INSTALL_LIBDIR,
# CMAKE_INSTALL_INCLUDEDIR (as the build set them), BUILD_TYPE, SANITIZE, CPU_ARCH.
foreach(_v BUILD_DIR WORK_DIR CONSUMER_DIR CXX_COMPILER CMAKE_INSTALL_LIBDIR
    CMAKE_INSTALL_INCLUDEDIR)
  if(NOT ${_v})
    message(FATAL_ERROR "run_consumer.cmake: ${_v} is not set")
  endif()
endforeach()
if(NOT BUILD_TYPE)
  set(BUILD_TYPE Release)
endif()
set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/consumer-build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

if(NOT EXISTS ${BUILD_DIR}/cli/pstrain)
  message(FATAL_ERROR "install test: ${BUILD_DIR}/cli/pstrain is missing: build first "
                      "(cmake --build ${BUILD_DIR})")
endif()

# 1. Install.
run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f
    bin/pstrain
    ${CMAKE_INSTALL_INCLUDEDIR}/pstrain/kernels/model.h
    ${CMAKE_INSTALL_INCLUDEDIR}/pstrain/runtime/base/status.h
    ${CMAKE_INSTALL_INCLUDEDIR}/pstrain/runtime/wire/proto/pstrain.pb.h
    ${CMAKE_INSTALL_INCLUDEDIR}/pstrain/worker/backend.h
    ${CMAKE_INSTALL_LIBDIR}/libpstrain_kernels.a
    ${CMAKE_INSTALL_LIBDIR}/libpstrain_worker.a
    ${CMAKE_INSTALL_INCLUDEDIR}/pstrain/export/export.h
    ${CMAKE_INSTALL_LIBDIR}/libpstrain_export.a
    ${CMAKE_INSTALL_LIBDIR}/cmake/pstrain/pstrainConfig.cmake
    ${CMAKE_INSTALL_LIBDIR}/cmake/pstrain/pstrainConfigVersion.cmake
    ${CMAKE_INSTALL_LIBDIR}/cmake/pstrain/pstrainTargets.cmake
    share/bash-completion/completions/pstrain)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install test: ${f} was not installed under ${prefix}")
  endif()
endforeach()
# The man page (when the build made one: PSTRAIN_MAN) renders and documents the commands' flags.
if(EXISTS ${BUILD_DIR}/pstrain.1)
  if(NOT EXISTS ${prefix}/share/man/man1/pstrain.1)
    message(FATAL_ERROR "install test: share/man/man1/pstrain.1 was not installed under ${prefix}")
  endif()
  file(READ ${prefix}/share/man/man1/pstrain.1 man_page)
  foreach(expected ".SH NAME" ".SH COMMANDS" "pstrain launch" "metrics_port" ".SH \"EXIT STATUS\"")
    string(FIND "${man_page}" "${expected}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "install test: the man page lacks '${expected}'")
    endif()
  endforeach()
endif()
run("installed pstrain --version" ${prefix}/bin/pstrain --version)
if(NOT run_output MATCHES "0\\.1")
  message(FATAL_ERROR "install test: bin/pstrain --version printed:\n${run_output}")
endif()

# 2. A consumer project: find_package(pstrain) from the prefix only (no package registry), with
# the flags the libraries were built with where a mismatch would break the link or the ABI.
set(flags "")
if(CPU_ARCH)
  string(APPEND flags " -march=${CPU_ARCH}")
endif()
set(link_flags "")
if(SANITIZE)
  string(APPEND flags " -fsanitize=${SANITIZE}")
  string(APPEND link_flags " -fsanitize=${SANITIZE}")
endif()
run("configuring the consumer" ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${consumer_build}
  -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  "-DCMAKE_CXX_FLAGS=${flags}"
  "-DCMAKE_EXE_LINKER_FLAGS=${link_flags}")
run("building the consumer" ${CMAKE_COMMAND} --build ${consumer_build} -j 2)

# 3. Run it.
run("running the consumer" ${consumer_build}/consumer)
if(NOT run_output MATCHES "consumer: model mlp has 79510 parameters on cpu")
  message(FATAL_ERROR "install test: unexpected consumer output:\n${run_output}")
endif()
message(STATUS "install test: ok: ${run_output}")
