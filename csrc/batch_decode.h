// Decodes many DICOM files into one preallocated buffer on several threads: the slices of a
// series, or a batch for the loader. Touches no Python object, so it runs with the GIL
// released.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "byte_reader.h"

namespace megamed {

struct BatchItem {
  ByteSpan file;          // the whole file (or bare dataset)
  std::string error;      // empty on success, else the reason
  std::string photometric;  // the decoded pixels' photometric interpretation
};

// With `slopes` and `intercepts` (one per item), the output is float32 instead: each
// sample v becomes float(v) * slope + intercept, rounded after the multiply and after the
// add (the Modality LUT as numpy computes it), at out + i * (item_bytes / item_size) * 4.
struct Rescale {
  const float* slopes = nullptr;
  const float* intercepts = nullptr;
};

// Decodes items[i] into out + i * item_bytes on `threads` threads. An item whose pixels
// are not `item_bytes` bytes of samples `item_size` bytes wide with signedness `is_signed`,
// or whose syntax is not decoded here, gets an error and leaves its slot untouched.
void decode_batch(std::vector<BatchItem>& items, uint8_t* out, uint64_t item_bytes,
                  uint32_t item_size, bool is_signed, unsigned threads, Rescale rescale = {});

}  // namespace megamed
