#include "dicom_values.h"

#include <charconv>

namespace megamed {

namespace {

std::string trim(const char* begin, const char* end) {
  while (begin < end && (*begin == ' ' || *begin == '\0')) ++begin;
  while (end > begin && (end[-1] == ' ' || end[-1] == '\0')) --end;
  return std::string(begin, end);
}

[[noreturn]] void bad_value(const char* keyword, const char* vr, const std::string& text) {
  throw DicomFormatError(std::string(keyword) + " is not a valid " + vr + " value: '" + printable(text) + "'");
}

}  // namespace

std::string printable(const std::string& text) {
  std::string out = text;
  for (char& c : out)
    if (c < 0x20 || c > 0x7E) c = '?';
  return out;
}

std::string text_value(ByteSpan value) {
  const char* begin = reinterpret_cast<const char*>(value.data);
  return trim(begin, begin + value.size);
}

std::vector<double> decimal_values(ByteSpan value, const char* keyword) {
  std::vector<double> out;
  const char* p = reinterpret_cast<const char*>(value.data);
  const char* end = p + value.size;
  while (true) {
    const char* sep = p;
    while (sep < end && *sep != '\\') ++sep;
    std::string item = trim(p, sep);
    // from_chars is locale-independent but takes no leading '+', which DS allows.
    const char* first = item.c_str() + (!item.empty() && item[0] == '+');
    const char* last = item.c_str() + item.size();
    double number = 0;
    auto [stop, err] = std::from_chars(first, last, number);
    if (item.empty() || err != std::errc() || stop != last) bad_value(keyword, "DS", text_value(value));
    out.push_back(number);
    if (sep == end) break;
    p = sep + 1;
  }
  return out;
}

long long integer_value(ByteSpan value, const char* keyword) {
  std::string item = text_value(value);
  const char* first = item.c_str() + (!item.empty() && item[0] == '+');
  const char* last = item.c_str() + item.size();
  long long number = 0;
  auto [stop, err] = std::from_chars(first, last, number);
  if (item.empty() || err != std::errc() || stop != last) bad_value(keyword, "IS", item);
  return number;
}

uint16_t unsigned_short_value(ByteSpan value, bool little_endian, const char* keyword) {
  if (value.size < 2)
    throw DicomFormatError(std::string(keyword) + " (US) has " + std::to_string(value.size) +
                           " bytes, expected 2");
  return load_u16(value.data, little_endian);
}

}  // namespace megamed
