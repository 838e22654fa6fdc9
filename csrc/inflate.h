// Raw deflate (RFC 1951) for the Deflated Explicit VR Little Endian syntax (PS3.5 A.5).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "byte_reader.h"
#include "memory_budget.h"

namespace megamed {

// Grows without zeroing: every byte inflate is handed is written before it is read, and
// zeroing the buffer first cost as much as a tenth of decoding a deflated image.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  UninitializedAllocator() = default;
  template <typename U>
  UninitializedAllocator(const UninitializedAllocator<U>&) noexcept {}
  template <typename U>
  void construct(U*) noexcept {}
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using InflatedBytes = std::vector<uint8_t, UninitializedAllocator<uint8_t>>;

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
  InflatedBytes take_output();

 private:
  void grow(size_t size);

  struct Stream;
  std::unique_ptr<Stream> stream_;
  ByteSpan in_;
  MemoryBudget& memory_;
  size_t consumed_ = 0, produced_ = 0;
  bool finished_ = false;
  InflatedBytes out_;
};

}  // namespace megamed
