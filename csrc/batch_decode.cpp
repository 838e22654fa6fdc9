#include "batch_decode.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "dicom_parse.h"
#include "pixel_decode.h"

namespace megamed {

namespace {

void decode_one(BatchItem& item, uint8_t* slot, uint64_t item_bytes, uint32_t item_size, bool is_signed) {
  ParsedDicom parsed = parse_dicom(item.file.data, item.file.size, false);
  std::optional<DecodePlan> plan = plan_decode(parsed);
  if (!plan) throw DicomFormatError("transfer syntax " + parsed.syntax.uid + " is not decoded by the C++ batch path");
  const PixelSpec& spec = plan->spec;
  if (spec.output_bytes() != item_bytes || spec.item_size() != item_size || spec.is_signed() != is_signed)
    throw DicomFormatError("pixels are " + std::to_string(spec.frames) + " x " + std::to_string(spec.rows) + " x " +
                           std::to_string(spec.columns) + " x " + std::to_string(spec.samples) + " samples of " +
                           std::to_string(spec.item_size()) + (spec.is_signed() ? " signed" : " unsigned") +
                           " bytes, unlike the first file of the batch");
  item.photometric = run_decode(parsed, *plan, slot);
}

template <typename T>
void rescale_samples(const uint8_t* stored, uint64_t count, float slope, float intercept, float* out) {
  const T* v = reinterpret_cast<const T*>(stored);
  for (uint64_t i = 0; i < count; ++i) {
    float scaled = float(v[i]) * slope;  // two roundings, as numpy: setup.py has -ffp-contract=off
    out[i] = scaled + intercept;
  }
}

void rescale_item(const uint8_t* stored, uint64_t item_bytes, uint32_t item_size, bool is_signed,
                  float slope, float intercept, float* out) {
  uint64_t count = item_bytes / item_size;
  switch (item_size * 2 + is_signed) {
    case 2: return rescale_samples<uint8_t>(stored, count, slope, intercept, out);
    case 3: return rescale_samples<int8_t>(stored, count, slope, intercept, out);
    case 4: return rescale_samples<uint16_t>(stored, count, slope, intercept, out);
    case 5: return rescale_samples<int16_t>(stored, count, slope, intercept, out);
    case 8: return rescale_samples<uint32_t>(stored, count, slope, intercept, out);
    case 9: return rescale_samples<int32_t>(stored, count, slope, intercept, out);
    case 16: return rescale_samples<uint64_t>(stored, count, slope, intercept, out);
    default: return rescale_samples<int64_t>(stored, count, slope, intercept, out);
  }
}

}  // namespace

void decode_batch(std::vector<BatchItem>& items, uint8_t* out, uint64_t item_bytes,
                  uint32_t item_size, bool is_signed, unsigned threads, Rescale rescale) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    std::vector<uint8_t> stored(rescale.slopes ? item_bytes : 0);  // one slice, reused
    for (size_t i; (i = next.fetch_add(1)) < items.size();) {
      try {
        if (!rescale.slopes) {
          decode_one(items[i], out + i * item_bytes, item_bytes, item_size, is_signed);
          continue;
        }
        decode_one(items[i], stored.data(), item_bytes, item_size, is_signed);
        float* target = reinterpret_cast<float*>(out) + i * (item_bytes / item_size);
        rescale_item(stored.data(), item_bytes, item_size, is_signed, rescale.slopes[i], rescale.intercepts[i], target);
      } catch (const std::exception& e) {  // DicomFormatError, or bad_alloc for one item
        items[i].error = e.what();
      }
    }
  };
  threads = std::max(1u, std::min<unsigned>(threads, unsigned(items.size())));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
}

}  // namespace megamed
