//===- KnownFailures.cpp - failures the fuzz run expects ------------------===//

#include "KnownFailures.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/MemoryBuffer.h"

using namespace paged_attn_fuzz;

bool KnownFailures::load(const std::string &path, std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer) {
    error = "cannot read " + path + ": " + buffer.getError().message();
    return false;
  }
  llvm::StringRef rest = (*buffer)->getBuffer();
  for (unsigned lineNo = 1; !rest.empty(); ++lineNo) {
    auto [line, tail] = rest.split('\n');
    rest = tail;
    line = line.trim();
    if (line.empty() || line.starts_with("#"))
      continue;
    Entry entry;
    entry.text = line.str();
    llvm::StringRef pattern = line;
    if (pattern.consume_front("input:")) {
      entry.onInput = true;
    } else if (!pattern.consume_front("report:")) {
      error = path + ":" + std::to_string(lineNo) +
              ": an entry starts with 'input:' or 'report:'";
      return false;
    }
    entry.regex = std::make_unique<llvm::Regex>(pattern.trim());
    std::string why;
    if (!entry.regex->isValid(why)) {
      error = path + ":" + std::to_string(lineNo) + ": " + why;
      return false;
    }
    entries.push_back(std::move(entry));
  }
  return true;
}

int KnownFailures::matchInput(const std::string &input) const {
  for (size_t i = 0; i < entries.size(); ++i)
    if (entries[i].onInput && entries[i].regex->match(input))
      return int(i);
  return -1;
}

int KnownFailures::matchFailure(const std::string &input,
                                const std::string &report) const {
  for (size_t i = 0; i < entries.size(); ++i)
    if (entries[i].regex->match(entries[i].onInput ? input : report))
      return int(i);
  return -1;
}
