// Python bindings: megamed._dicom.read() and megamed._dicom.FormatError. No torch.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "attributes.h"
#include "batch_decode.h"
#include "dicom_parse.h"
#include "deid_scan.h"
#include "dicom_values.h"
#include "encapsulation.h"
#include "pixel_decode.h"

namespace py = pybind11;
using namespace megamed;

namespace {

// A contiguous read-only view of any buffer-protocol object (bytes, bytearray, memoryview,
// numpy array), held for the duration of one call.
class BufferView {
 public:
  explicit BufferView(py::handle object) {
    if (PyObject_GetBuffer(object.ptr(), &view_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  }
  ~BufferView() { PyBuffer_Release(&view_); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
  size_t size() const { return size_t(view_.len); }

 private:
  Py_buffer view_{};
};

// Text from the file may hold any bytes; latin-1 maps each byte to one character.
py::str file_text(const std::string& text) {
  return py::reinterpret_steal<py::str>(PyUnicode_DecodeLatin1(text.data(), Py_ssize_t(text.size()), nullptr));
}

py::object attribute_value(const WantedAttribute& a, ByteSpan value, bool little_endian) {
  switch (a.kind) {
    case AttributeKind::kUnsignedShort: return py::int_(unsigned_short_value(value, little_endian, a.keyword));
    case AttributeKind::kInteger: return py::int_(integer_value(value, a.keyword));
    case AttributeKind::kDecimal: return py::float_(decimal_values(value, a.keyword).front());
    case AttributeKind::kDecimals: {
      py::list numbers;
      for (double v : decimal_values(value, a.keyword)) numbers.append(v);
      return numbers;
    }
    default: return file_text(text_value(value));
  }
}

py::dict attributes_dict(const ParsedDicom& parsed) {
  py::dict out;
  for (const WantedAttribute& a : wanted_attributes()) {
    auto it = parsed.attributes.find(a.tag);
    if (a.keyword && it != parsed.attributes.end() && it->second.size > 0)
      out[a.keyword] = attribute_value(a, it->second, parsed.syntax.little_endian);
  }
  return out;
}

// {tag: (vr, value)}: value is bytes, or a list of item dicts for a sequence.
py::dict header_dict(const std::vector<Element>& elements) {
  py::dict out;
  for (const Element& e : elements) {
    py::object value;
    if (e.is_sequence) {
      py::list items;
      for (const auto& item : e.items) items.append(header_dict(item));
      value = items;
    } else {
      value = py::bytes(reinterpret_cast<const char*>(e.value.data), e.value.size);
    }
    out[py::int_(e.tag)] = py::make_tuple(py::str(e.vr), value);
  }
  return out;
}

py::dtype output_dtype(const PixelSpec& spec) {
  bool sign = spec.is_signed();
  switch (spec.item_size()) {
    case 1: return sign ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
    case 2: return sign ? py::dtype::of<int16_t>() : py::dtype::of<uint16_t>();
    case 4: return sign ? py::dtype::of<int32_t>() : py::dtype::of<uint32_t>();
    default: return sign ? py::dtype::of<int64_t>() : py::dtype::of<uint64_t>();
  }
}

// Each frame's encoded bytes (PS3.5 A.4), fragments joined.
py::list encoded_frames(const ParsedDicom& parsed) {
  PixelSpec spec = pixel_spec_from(parsed);
  py::list frames;
  for (const std::vector<ByteSpan>& fragments : split_frames(parsed, spec.frames)) {
    std::vector<uint8_t> storage;
    ByteSpan frame = join_fragments(fragments, storage);
    frames.append(py::bytes(reinterpret_cast<const char*>(frame.data), frame.size));
  }
  return frames;
}

py::dict read_dicom(py::object data, bool pixels, bool attributes, bool header, uint64_t memory_limit) {
  BufferView buffer(data);
  ParsedDicom parsed;
  std::optional<DecodePlan> plan;
  {
    py::gil_scoped_release release;
    parsed = parse_dicom(buffer.data(), buffer.size(), header, memory_limit);
    if (pixels) plan = plan_decode(parsed);
  }
  py::dict out;
  out["transfer_syntax"] = parsed.syntax.uid;
  out["syntax_guessed"] = parsed.syntax_guessed;
  out["little_endian"] = parsed.syntax.little_endian;
  if (pixels) {
    py::object array = py::none(), photometric = py::none();
    if (plan) {
      py::array decoded(output_dtype(plan->spec), plan->spec.shape());
      uint8_t* target = static_cast<uint8_t*>(decoded.mutable_data());
      std::string decoded_photometric;
      {
        py::gil_scoped_release release;
        decoded_photometric = run_decode(parsed, *plan, target);
      }
      array = decoded;
      photometric = file_text(decoded_photometric);
    } else if (parsed.pixels.encapsulated) {
      out["frames"] = encoded_frames(parsed);  // for the codec that decodes this syntax
    }
    out["pixels"] = array;
    out["photometric"] = photometric;
  }
  if (attributes) out["attributes"] = attributes_dict(parsed);
  if (header) out["header"] = header_dict(parsed.header);
  return out;
}

// Decodes each buffer of `sources` into its slot of `out` (a writable C-contiguous buffer of
// len(sources) x item_bytes bytes) on `threads` threads with the GIL released. Returns one
// (error or None, photometric) pair per source.
py::list decode_batch_into(py::sequence sources, py::object out, uint64_t item_bytes, uint32_t item_size,
                           bool is_signed, unsigned threads, std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> slopes,
                           std::optional<py::array_t<float, py::array::c_style | py::array::forcecast>> intercepts) {
  std::vector<std::unique_ptr<BufferView>> views;
  std::vector<BatchItem> items(py::len(sources));
  for (size_t i = 0; i < items.size(); ++i) {
    views.push_back(std::make_unique<BufferView>(sources[i]));
    items[i].file = {views.back()->data(), views.back()->size()};
  }
  Py_buffer target{};
  if (PyObject_GetBuffer(out.ptr(), &target, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
  std::unique_ptr<Py_buffer, void (*)(Py_buffer*)> release_target(&target, PyBuffer_Release);
  Rescale rescale;
  uint64_t out_bytes = item_bytes * items.size();
  if (slopes || intercepts) {
    if (!slopes || !intercepts || size_t(slopes->size()) != items.size() || size_t(intercepts->size()) != items.size())
      throw py::value_error("slopes and intercepts need one value per source");
    if (item_size == 0 || item_bytes % item_size) throw py::value_error("item_bytes is not a whole number of samples");
    rescale = {slopes->data(), intercepts->data()};
    out_bytes = item_bytes / item_size * sizeof(float) * items.size();
  }
  if (uint64_t(target.len) != out_bytes)
    throw py::value_error("out has " + std::to_string(target.len) + " bytes, expected " + std::to_string(out_bytes));
  {
    py::gil_scoped_release release;
    decode_batch(items, static_cast<uint8_t*>(target.buf), item_bytes, item_size, is_signed, threads, rescale);
  }
  py::list results;
  for (const BatchItem& item : items)
    results.append(py::make_tuple(item.error.empty() ? py::object(py::none()) : py::object(file_text(item.error)),
                                  file_text(item.photometric)));
  return results;
}

// The budget admits only what the file justifies, yet the machine may still refuse it (an
// address-space limit, say): that failure is a FormatError too, so callers see one type.
py::dict read_dicom_checked(py::object data, bool pixels, bool attributes, bool header,
                            uint64_t memory_limit) {
  try {
    return read_dicom(data, pixels, attributes, header, memory_limit);
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_MemoryError)) throw;
    throw DicomLimitError("out of memory while building the result (MemoryError)");
  } catch (const std::bad_alloc&) {
    throw DicomLimitError("out of memory while decoding (std::bad_alloc)");
  } catch (const std::length_error& e) {
    throw DicomLimitError(std::string("buffer too large while decoding (") + e.what() + ")");
  }
}

}  // namespace

PYBIND11_MODULE(_dicom, m) {
  m.doc() = "DICOM parsing and native / RLE Lossless pixel decoding into numpy arrays (PS3.5).";
  py::register_exception<DicomFormatError>(m, "FormatError", PyExc_ValueError);
  m.attr("AUTO_MEMORY_FACTOR") = MemoryBudget::kImageFactor;
  m.attr("AUTO_MEMORY_FLOOR") = MemoryBudget::kFloor;
  m.attr("MAX_SEQUENCE_DEPTH") = kMaxSequenceDepth;
  m.def("read", &read_dicom_checked, py::arg("data"), py::kw_only(), py::arg("pixels") = true,
        py::arg("attributes") = false, py::arg("header") = false, py::arg("memory_limit") = 0,
        R"doc(Parse a DICOM Part 10 file or bare dataset held in a buffer.

Returns a dict: transfer_syntax (UID str), syntax_guessed (bool), little_endian (bool);
with pixels=True: pixels (numpy array of stored values, shape [rows, cols],
[rows, cols, samples], [frames, rows, cols] or [frames, rows, cols, samples], native byte
order; None when the syntax is encapsulated and not RLE or JPEG Lossless, and then frames:
each frame's encoded bytes) and photometric (the output's photometric interpretation); with attributes=True: attributes ({keyword: value}
for the Image Pixel, geometry, rescale, window, modality and UID attributes present);
with header=True: header ({tag: (vr, bytes | [item dict, ...])}, every element but Pixel
Data). memory_limit: the most bytes the decode may allocate (inflated dataset, header,
scratch, the array); 0 means AUTO_MEMORY_FACTOR x the image the header describes +
AUTO_MEMORY_FLOOR. Raises FormatError (a ValueError) naming the reason for malformed input,
for a limit passed and for an allocation the machine refuses.)doc");
  m.def("deid_id_scanner",
        [](const std::unordered_set<std::string>& label_ends) {
          return py::cpp_function([label_ends](const std::string& text) {
            return deid_id_values(text, label_ends);
          });
        },
        py::arg("label_ends"),
        R"doc(A function text -> [(start, end), ...]: the candidate identifier values of
megamed.data.deid.patterns._id_values for ASCII `text`, given patterns._LABEL_ENDS.)doc");
  m.def("deid_place_word_scanner",
        [](const std::vector<std::string>& endings, const std::unordered_set<std::string>& triggers) {
          return py::cpp_function([endings, triggers](const std::string& text) {
            return deid_place_words(text, endings, triggers);
          });
        },
        py::arg("endings"), py::arg("triggers"),
        R"doc(A function text -> [start, ...]: the capitalised words of ASCII `text` that
megamed.data.deid.patterns.addresses() acts on (see patterns._place_words).)doc");
  m.def("deid_month_starts", &deid_month_starts, py::arg("low"),
        R"doc(The starts of patterns._MONTH_WORD's matches in lower-case ASCII `low` that start
a word (see patterns._month_starts).)doc");
  m.def("deid_anchor_starts", &deid_anchor_starts, py::arg("kind"), py::arg("text"),
        R"doc(Every position where the anchor pattern `kind` of megamed.data.deid.patterns matches
in ASCII `text` (see patterns._NATIVE_ANCHORS); an unknown kind gives [].)doc");
  m.def("deid_anchor_table", &deid_anchor_table, py::arg("text"), py::arg("kinds"),
        R"doc([deid_anchor_starts(kind, text) for kind in kinds], in one call.)doc");
  m.def("deid_split_tokens",
        [](const std::string& text) {
          // (the parts of ASCII text are ASCII: made as such, without UTF-8 decoding each)
          const std::vector<std::string> parts = deid_split_tokens(text);
          py::list out(parts.size());
          for (size_t k = 0; k < parts.size(); ++k) {
            PyObject* s = PyUnicode_New(static_cast<Py_ssize_t>(parts[k].size()), 127);
            if (s == nullptr) throw py::error_already_set();
            std::memcpy(PyUnicode_1BYTE_DATA(s), parts[k].data(), parts[k].size());
            PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(k), s);
          }
          return out;
        },
        py::arg("text"),
        R"doc(megamed.data.deid.names._TOKEN_SPLIT_ASCII.split(text) for ASCII `text`.)doc");
  m.def("deid_uncased_regions", &deid_uncased_regions, py::arg("text"),
        R"doc(megamed.data.deid.names._uncased_regions(text) for ASCII `text`.)doc");
  m.def("deid_literal_gates",
        [](const std::vector<std::tuple<std::string, bool, int>>& literals, int gates) {
          auto scanner = std::make_shared<LiteralGates>(literals, gates);
          return py::cpp_function([scanner](const std::string& text) {
            return py::bytes(scanner->scan(text));
          });
        },
        py::arg("literals"), py::arg("gates"),
        R"doc(A function text -> bytes, one byte per gate (1: on): gate g is on where one of its
literals (literal, folded, g) occurs in ASCII `text`, a folded one in text.lower() (see
megamed.data.deid.gates).)doc");
  m.def("deid_run_masks", &deid_run_masks, py::arg("text"),
        R"doc((start, mask) of the digit runs of ASCII `text` where some pattern of
megamed.data.deid.patterns._RUN_PATTERNS may match; bit k of mask: the k-th of
patterns._RUN_BITS may (none matches where its bit is clear).)doc");
  m.def("deid_token_parts",
        [](const std::string& text) {
          // (ASCII text: each part made as an ASCII string, without UTF-8 decoding)
          const std::vector<long> b = deid_token_bounds(text);
          const Py_ssize_t k = static_cast<Py_ssize_t>(b.size() / 2);
          py::list gaps(k + 1), tokens(k), starts(k), ends(k);
          auto ascii = [&text](long from, long to) {
            PyObject* s = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, text.data() + from,
                                                    static_cast<Py_ssize_t>(to - from));
            if (s == nullptr) throw py::error_already_set();
            return s;
          };
          auto number = [](long v) {
            PyObject* o = PyLong_FromLong(v);
            if (o == nullptr) throw py::error_already_set();
            return o;
          };
          long prev = 0;
          for (Py_ssize_t j = 0; j < k; ++j) {
            PyList_SET_ITEM(gaps.ptr(), j, ascii(prev, b[2 * j]));
            PyList_SET_ITEM(tokens.ptr(), j, ascii(b[2 * j], b[2 * j + 1]));
            PyList_SET_ITEM(starts.ptr(), j, number(b[2 * j]));
            PyList_SET_ITEM(ends.ptr(), j, number(b[2 * j + 1]));
            prev = b[2 * j + 1];
          }
          PyList_SET_ITEM(gaps.ptr(), k, ascii(prev, static_cast<long>(text.size())));
          return py::make_tuple(gaps, tokens, starts, ends);
        },
        py::arg("text"),
        R"doc(megamed.data.deid.names._token_parts_python(text) for ASCII `text`: (gaps, tokens,
starts, ends) of its token split.)doc");
  m.def("decode_batch", &decode_batch_into, py::arg("sources"), py::arg("out"), py::arg("item_bytes"),
        py::arg("item_size"), py::arg("is_signed"), py::arg("threads") = 1,
        py::arg("slopes") = py::none(), py::arg("intercepts") = py::none(),
        R"doc(Decode the Pixel Data of each buffer in `sources` into its slot of `out` (a writable
C-contiguous buffer of len(sources) x item_bytes bytes, native byte order) on `threads` C++
threads with the GIL released. Returns [(error message or None, photometric), ...]; a source
whose pixels differ in size or sample type, or whose syntax is not decoded in C++, gets an
error and leaves its slot as it was. With slopes and intercepts (float32, one per source) `out`
is float32 and receives float(v) * slope + intercept (the Modality LUT) instead.)doc");
}
