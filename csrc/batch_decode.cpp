#include "batch_decode.h"

#include <algorithm>
#include <atomic>
#include <thread>

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

}  // namespace

void decode_batch(std::vector<BatchItem>& items, uint8_t* out, uint64_t item_bytes,
                  uint32_t item_size, bool is_signed, unsigned threads) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < items.size();) {
      try {
        decode_one(items[i], out + i * item_bytes, item_bytes, item_size, is_signed);
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
