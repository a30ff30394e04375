// The main() of a fuzz target built without libFuzzer (plain g++, and the sanitizer configs):
// runs every file of the corpus directories given as arguments through LLVMFuzzerTestOneInput
// once, in name order, so that `bazel test //...` replays the committed corpora as regression
// tests. A crash, a sanitizer report or a failed check aborts, naming the input. Built with
// --config=fuzz, libFuzzer's own main() takes its place (fuzz/fuzz.bzl).
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

std::vector<std::string> inputsIn(const std::string& path) {
  std::vector<std::string> files;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return files;
  if (!S_ISDIR(st.st_mode)) return {path};
  if (DIR* dir = opendir(path.c_str())) {
    while (struct dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (name[0] != '.') files.push_back(path + "/" + name);
    }
    closedir(dir);
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  size_t replayed = 0;
  for (int i = 1; i < argc; i++) {
    std::vector<std::string> files = inputsIn(argv[i]);
    if (files.empty()) {
      fprintf(stderr, "%s: no inputs at %s\n", argv[0], argv[i]);
      return 1;
    }
    for (const std::string& file: files) {
      std::ifstream in(file, std::ios::binary);
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
      fprintf(stderr, "replaying %s (%zu bytes)\n", file.c_str(), bytes.size());
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    }
    replayed += files.size();
  }
  if (replayed == 0) {
    fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 1;
  }
  printf("replayed %zu inputs\n", replayed);
  return 0;
}
