// One PNG file as a model input image (what `pstrain predict` reads from a directory of PNG
// files; docs/serving.md).
//
// Contract: read_png_image() decodes with libpng's simplified API into 8-bit grey: grey images
// as they are (1, 2 and 4-bit grey expanded, 16-bit reduced to 8), palette and RGB images
// converted to grey by libpng (sRGB luminance), and transparent pixels composited onto black,
// the background of MNIST-style images. The image must be exactly rows x cols pixels (no
// resizing). Pixels come back scaled to [0, 1], row-major, as worker/data.h's images. A file
// that cannot be opened, is not a PNG, is corrupt or has another size is an error naming the
// file and the fault; bad bytes never abort the process.
// Thread-safety: a pure function over one file.
#pragma once

#include <string>
#include <vector>

#include "runtime/base/status.h"

namespace pstrain {

Result<std::vector<float>> read_png_image(const std::string& path, int rows, int cols);

}  // namespace pstrain
