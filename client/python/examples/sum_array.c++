// A C++ consumer of a numpy array: turns a share token into a zero-copy View, reads the .npy
// header numpy wrote (refstore.arrays stores arrays as .npy files), and sums the float64
// elements where they lie, in refstored's shared memory. With produce_array.py, two unrelated
// programs -- Python with numpy, and C++ -- exchange a 64 MiB value by token, without a copy.
//
//   sum_array [--store SOCKET] TOKEN      prints "shape (8388608,) sum 17592183947264"
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "client/cpp/refstore_client.h"

namespace {

// The parts of a .npy header this example needs (numpy.lib.format: magic, version, length,
// then a Python dict literal such as "{'descr': '<f8', 'fortran_order': False, 'shape': (3,)}").
struct NpyHeader {
  std::string descr;
  std::vector<uint64_t> shape;
  size_t dataOffset = 0;
};

std::string field(const std::string& dict, const std::string& key) {
  size_t at = dict.find("'" + key + "':");
  if (at == std::string::npos) throw std::runtime_error("no '" + key + "' in the .npy header");
  at += key.size() + 3;
  while (at < dict.size() && dict[at] == ' ') at++;
  size_t end = dict[at] == '(' ? dict.find(')', at) + 1 : dict.find_first_of(",}", at);
  return dict.substr(at, end - at);
}

NpyHeader parseNpy(const uint8_t* data, size_t size) {
  if (size < 10 || memcmp(data, "\x93NUMPY", 6) != 0) {
    throw std::runtime_error("not a .npy value (store arrays with refstore's put_array)");
  }
  bool version1 = data[6] == 1;
  size_t lengthBytes = version1 ? 2 : 4;
  size_t headerLength = data[8] | (data[9] << 8);
  if (!version1) headerLength |= (size_t(data[10]) << 16) | (size_t(data[11]) << 24);
  NpyHeader header;
  header.dataOffset = 8 + lengthBytes + headerLength;
  if (header.dataOffset > size) throw std::runtime_error("truncated .npy header");
  std::string dict(reinterpret_cast<const char*>(data) + 8 + lengthBytes, headerLength);
  header.descr = field(dict, "descr");
  std::string shape = field(dict, "shape");  // "(8388608,)", "(3, 4)", "()"
  for (const char* p = shape.c_str(); *p;) {
    if (*p >= '0' && *p <= '9') {
      char* end;
      header.shape.push_back(strtoull(p, &end, 10));
      p = end;
    } else {
      p++;
    }
  }
  return header;
}

}  // namespace

int main(int argc, char** argv) {
  std::string store, token;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
      store = argv[++i];
    } else if (token.empty() && argv[i][0] != '-') {
      token = argv[i];
    } else {
      token.clear();
      break;
    }
  }
  if (token.empty()) {
    fprintf(stderr, "usage: sum_array [--store SOCKET] TOKEN\n");
    return 2;
  }
  try {
    refstore::Client client = refstore::Client::connect(store);
    refstore::View view = client.restoreView(token);  // one round trip; zero-copy from here
    NpyHeader header = parseNpy(view.data(), view.size());
    if (header.descr != "'<f8'") {
      throw std::runtime_error("this example sums float64 arrays ('<f8'), not " + header.descr);
    }
    uint64_t count = 1;
    for (uint64_t n: header.shape) count *= n;
    if (header.dataOffset + count * sizeof(double) > view.size()) {
      throw std::runtime_error("the .npy header describes more bytes than the value holds");
    }
    // numpy aligns the data to 64 bytes within the value: read the doubles where they lie.
    const double* values = reinterpret_cast<const double*>(view.data() + header.dataOffset);
    double sum = 0;
    for (uint64_t i = 0; i < count; i++) sum += values[i];
    printf("shape (");
    for (size_t d = 0; d < header.shape.size(); d++) {
      printf("%s%llu", d ? ", " : "", (unsigned long long)header.shape[d]);
    }
    printf("%s) sum %.17g\n", header.shape.size() == 1 ? "," : "", sum);
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "sum_array: %s\n", e.what());
    return 1;
  }
}
