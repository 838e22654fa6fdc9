// Raw deflate (RFC 1951) for the Deflated Explicit VR Little Endian syntax (PS3.5 A.5).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "byte_reader.h"
#include "memory_budget.h"

namespace megamed {

// Inflates a raw deflate stream (no zlib or gzip wrapper, PS3.5 A.5) step by step, so the
// caller decides from what is already out how much more it accepts: deflate expands up to
// about 1000:1, so output is only produced on request, and every buffer growth is charged
// to the decode's memory budget first.
class RawInflater {
 public:
  RawInflater(ByteSpan compressed, MemoryBudget& memory);
  ~RawInflater();
  RawInflater(const RawInflater&) = delete;
  RawInflater& operator=(const RawInflater&) = delete;

  // Inflates until `size` bytes are out or the stream ends. Throws DicomFormatError for a
  // corrupt stream or one whose input ends before the stream does, DicomLimitError when
  // the buffer would pass the memory budget.
  void inflate_to(size_t size);
  bool finished() const { return finished_; }
  ByteSpan output() const { return {out_.data(), produced_}; }
  // The inflated bytes (output().size of them); the inflater is spent.
  std::vector<uint8_t> take_output();

 private:
  void grow(size_t size);

  struct Stream;
  std::unique_ptr<Stream> stream_;
  ByteSpan in_;
  MemoryBudget& memory_;
  size_t consumed_ = 0, produced_ = 0;
  bool finished_ = false;
  std::vector<uint8_t> out_;
};

}  // namespace megamed
