# Installation: `cmake --install <build> --prefix P` puts the binary in P/bin, the static
# libraries in P/lib, the headers under P/include/pstrain (the source layout, so that
# `#include "kernels/model.h"` works with P/include/pstrain on the include path) and the CMake
# package in P/lib/cmake/pstrain: find_package(pstrain) gives pstrain::base, pstrain::kernels,
# pstrain::worker, ... (see cmake/pstrainConfig.cmake.in).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(PSTRAIN_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/pstrain)
set(PSTRAIN_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/pstrain)

# pstrain_install_library(<target> <export name> [EXCLUDE <subfolder>...]): installs the
# library into the pstrain export set as pstrain::<export name>, and the headers of the calling
# folder (*.h, *.cuh) under include/pstrain/<folder relative to the source root>.
function(pstrain_install_library target export_name)
  cmake_parse_arguments(I "" "" "EXCLUDE" ${ARGN})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${export_name})
  install(TARGETS ${target} EXPORT pstrainTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  file(RELATIVE_PATH _rel ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  set(_excludes "")
  foreach(_e IN LISTS I_EXCLUDE)
    list(APPEND _excludes PATTERN ${_e} EXCLUDE)
  endforeach()
  install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/
    DESTINATION ${PSTRAIN_INSTALL_INCLUDEDIR}/${_rel}
    FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh" ${_excludes})
endfunction()

# pstrain_install_package(): the export set, pstrainConfig.cmake and pstrainConfigVersion.cmake
# (call once, after every target has been added).
function(pstrain_install_package)
  install(EXPORT pstrainTargets
    NAMESPACE pstrain::
    FILE pstrainTargets.cmake
    DESTINATION ${PSTRAIN_INSTALL_CMAKEDIR})
  set(PSTRAIN_CONFIG_WITH_CUDA ${PSTRAIN_CUDA})
  configure_package_config_file(
    ${PROJECT_SOURCE_DIR}/cmake/pstrainConfig.cmake.in
    ${PROJECT_BINARY_DIR}/pstrainConfig.cmake
    INSTALL_DESTINATION ${PSTRAIN_INSTALL_CMAKEDIR}
    PATH_VARS PSTRAIN_INSTALL_INCLUDEDIR)
  # 0.x: a minor version may break the API, so only the same major.minor is compatible.
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/pstrainConfigVersion.cmake
    VERSION ${PROJECT_VERSION}
    COMPATIBILITY SameMinorVersion)
  install(FILES
    ${PROJECT_BINARY_DIR}/pstrainConfig.cmake
    ${PROJECT_BINARY_DIR}/pstrainConfigVersion.cmake
    DESTINATION ${PSTRAIN_INSTALL_CMAKEDIR})
endfunction()
