// Bounds-checked cursor over an immutable byte buffer. Every read of file bytes in the
// extension goes through this class (or through a length it has already checked), so a
// corrupt length can only ever produce a DicomFormatError, never an out-of-bounds access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace megamed {

// Malformed or unsupported input. The message says what was expected and what was found;
// the Python layer adds the file name (megamed.data.dicom.DicomError).
class DicomFormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The buffer ended inside a structure. Only a parse of a partly inflated dataset (which can
// inflate more and retry) treats it differently from other format errors.
class DicomTruncatedError : public DicomFormatError {
 public:
  using DicomFormatError::DicomFormatError;
};

// A bound the decoder imposes (nesting depth, memory per decode) rather than a rule of the
// standard. A speculative parse never swallows it: the input stays rejected.
class DicomLimitError : public DicomFormatError {
 public:
  using DicomFormatError::DicomFormatError;
};

inline uint16_t load_u16(const uint8_t* p, bool little) {
  return little ? uint16_t(p[0] | (p[1] << 8)) : uint16_t((p[0] << 8) | p[1]);
}

inline uint32_t load_u32(const uint8_t* p, bool little) {
  return little ? uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24
                : uint32_t(p[3]) | uint32_t(p[2]) << 8 | uint32_t(p[1]) << 16 | uint32_t(p[0]) << 24;
}

inline uint64_t load_u64(const uint8_t* p, bool little) {
  uint64_t lo = load_u32(p, little), hi = load_u32(p + 4, little);
  return little ? (hi << 32 | lo) : (lo << 32 | hi);
}

// A contiguous, already bounds-checked region of the buffer.
struct ByteSpan {
  const uint8_t* data = nullptr;
  size_t size = 0;
};

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, bool little_endian = true)
      : data_(data), size_(size), little_(little_endian) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  bool little_endian() const { return little_; }
  void set_little_endian(bool little) { little_ = little; }
  const uint8_t* data() const { return data_; }

  void seek(size_t pos) {
    if (pos > size_) fail("seek to byte " + std::to_string(pos), pos - size_);
    pos_ = pos;
  }

  // Returns `n` bytes at the cursor and moves past them.
  ByteSpan take(uint64_t n) {
    if (n > remaining()) fail("read of " + std::to_string(n) + " bytes", n - remaining());
    ByteSpan span{data_ + pos_, size_t(n)};
    pos_ += size_t(n);
    return span;
  }

  void skip(uint64_t n) { take(n); }

  // Looks at `n` bytes at the cursor without moving; nullptr when fewer remain.
  const uint8_t* peek(size_t n) const { return n <= remaining() ? data_ + pos_ : nullptr; }

  uint16_t u16() { return load_u16(take(2).data, little_); }
  uint32_t u32() { return load_u32(take(4).data, little_); }

 private:
  [[noreturn]] void fail(const std::string& what, uint64_t short_by) const {
    throw DicomTruncatedError("truncated data: " + what + " at byte " + std::to_string(pos_) +
                           " runs " + std::to_string(short_by) + " bytes past the end of the " +
                           std::to_string(size_) + "-byte buffer");
  }

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  bool little_;
};

}  // namespace megamed
