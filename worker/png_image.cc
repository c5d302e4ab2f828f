#include "worker/png_image.h"

#include <png.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace pstrain {

Result<std::vector<float>> read_png_image(const std::string& path, int rows, int cols) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return not_found(path + ": not a readable file");
  }
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, path.c_str()) == 0) {
    const std::string why = image.message;
    png_image_free(&image);
    return data_loss(path + ": not a readable PNG image (libpng: " + why + ")");
  }
  if (image.width != static_cast<png_uint_32>(cols) ||
      image.height != static_cast<png_uint_32>(rows)) {
    const std::string size = std::to_string(image.width) + "x" + std::to_string(image.height);
    png_image_free(&image);
    return invalid_argument(path + ": the image is " + size + " pixels; the model takes " +
                            std::to_string(cols) + "x" + std::to_string(rows) +
                            " grey images (resize it first)");
  }
  image.format = PNG_FORMAT_GRAY;
  // Zeroed: with no background given, libpng composites transparent pixels onto the buffer.
  std::vector<png_byte> grey(PNG_IMAGE_SIZE(image), 0);
  if (png_image_finish_read(&image, nullptr, grey.data(), 0, nullptr) == 0) {
    const std::string why = image.message;
    png_image_free(&image);
    return data_loss(path + ": corrupt PNG image (libpng: " + why + ")");
  }
  std::vector<float> out(grey.size());
  for (size_t i = 0; i < grey.size(); ++i) out[i] = static_cast<float>(grey[i]) / 255.0f;
  return out;
}

}  // namespace pstrain
