//===- KnownFailures.h - failures the fuzz run expects ----------*- C++ -*-===//
//
// A file of known bugs, one per line, so that a run is green while they
// wait for their fix and turns red on anything new:
//
//   # comment
//   input: REGEX    inputs matching REGEX are not run (they crash or hang)
//   report: REGEX   a failure whose report matches REGEX is expected
//
// Reports read "KIND in STAGE: MESSAGE" followed by the crash log, where
// KIND is crash, hang, oom, invalid-ir, silent-failure, round-trip or
// invalid-launch. Regexes are POSIX extended (llvm::Regex). Delete an entry
// once its bug is fixed: a run lists the entries that matched nothing.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_TEST_FUZZ_KNOWNFAILURES_H
#define PAGEDATTN_TEST_FUZZ_KNOWNFAILURES_H

#include "llvm/Support/Regex.h"

#include <memory>
#include <string>
#include <vector>

namespace paged_attn_fuzz {

class KnownFailures {
public:
  /// Reads `path`; on failure returns false with `error` set.
  bool load(const std::string &path, std::string &error);

  /// The index of the first `input:` entry matching `input`, or -1.
  int matchInput(const std::string &input) const;
  /// The index of the first entry matching a failure (a `report:` entry on
  /// its report, an `input:` entry on its input), or -1.
  int matchFailure(const std::string &input, const std::string &report) const;

  size_t size() const { return entries.size(); }
  /// The entry as written ("input: ...").
  const std::string &text(size_t index) const { return entries[index].text; }

private:
  struct Entry {
    bool onInput = false;
    std::string text;
    std::unique_ptr<llvm::Regex> regex;
  };
  std::vector<Entry> entries;
};

} // namespace paged_attn_fuzz

#endif // PAGEDATTN_TEST_FUZZ_KNOWNFAILURES_H
