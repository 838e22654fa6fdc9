// The memory one decode may allocate: the inflated dataset, the header handed to Python,
// scratch buffers and the decoded array. Every such allocation is charged here first, so a
// file can only make the decoder allocate what its bytes and its header justify, and never
// more than the caller's limit (megamed.data.dicom's `memory_limit`).
#pragma once

#include <cstdint>
#include <string>

#include "byte_reader.h"

namespace megamed {

class MemoryBudget {
 public:
  // A limit of kAuto means: kImageFactor x the decoded image's bytes (once the header has
  // described it) + kFloor. Before that, and for files without an image, kFloor alone.
  static constexpr uint64_t kAuto = 0;
  static constexpr uint64_t kImageFactor = 4;
  static constexpr uint64_t kFloor = uint64_t(64) << 20;
  // What one header element costs once it is a Python (tag, (vr, value)) entry, about.
  static constexpr uint64_t kHeaderElementBytes = 512;

  explicit MemoryBudget(uint64_t limit = kAuto) : requested_(limit) {}

  // The image the header describes, in decoded bytes; raises the automatic limit.
  void set_image_bytes(uint64_t bytes) {
    if (bytes > image_bytes_) image_bytes_ = bytes;
  }

  uint64_t limit() const {
    if (requested_ != kAuto) return requested_;
    constexpr uint64_t most = ~uint64_t(0);
    if (image_bytes_ > (most - kFloor) / kImageFactor) return most;
    return image_bytes_ * kImageFactor + kFloor;
  }
  uint64_t used() const { return used_; }
  uint64_t available() const { return used_ >= limit() ? 0 : limit() - used_; }

  // Throws DicomLimitError when `bytes` more would pass the limit. `what` is a literal: the
  // message is only built on failure, so a charge per element costs a compare and an add.
  void charge(uint64_t bytes, const char* what) {
    if (bytes > available()) exceeded(bytes, what);
    used_ += bytes;
  }
  void release(uint64_t bytes) { used_ = bytes > used_ ? 0 : used_ - bytes; }

 private:
  [[noreturn]] void exceeded(uint64_t bytes, const char* what) const {
    throw DicomLimitError(std::string(what) + ": " + std::to_string(bytes) +
                          " more bytes would pass the memory limit of " + std::to_string(limit()) +
                          " bytes per decode (" + std::to_string(used_) + " in use; " + limit_origin() + ")");
  }

  std::string limit_origin() const {
    if (requested_ != kAuto) return "memory_limit as given";
    return "automatic: " + std::to_string(kImageFactor) + " x the " + std::to_string(image_bytes_) +
           "-byte image the header describes + " + std::to_string(kFloor >> 20) + " MiB";
  }

  uint64_t requested_;
  uint64_t image_bytes_ = 0;
  uint64_t used_ = 0;
};

}  // namespace megamed
