// Paths the integration tests that run the real binary share: the pstrain executable of this
// build tree and the Debian data set's directory (tests skip when it is not installed).
#pragma once

namespace pstrain::testing_util {

inline constexpr const char* kPstrain = PSTRAIN_BINARY_DIR "/cli/pstrain";
inline constexpr const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

}  // namespace pstrain::testing_util
