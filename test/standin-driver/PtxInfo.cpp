//===- PtxInfo.cpp - what the stand-in driver reads from PTX --------------===//
//
// A scanner, not a parser: it reads the directives the launch checks need
// from PTX as LLVM's NVPTX back end prints it and ignores instructions.
//
//===----------------------------------------------------------------------===//

#include "PtxInfo.h"

#include <cctype>
#include <cstdlib>
#include <vector>

using namespace standin;

static bool isIdentChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
         c == '%';
}

/// `text` without // and /* */ comments (newlines kept for line numbers).
static std::string stripComments(const std::string &text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 2, "//") == 0) {
      while (i < text.size() && text[i] != '\n')
        ++i;
      if (i < text.size())
        out += '\n';
    } else if (text.compare(i, 2, "/*") == 0) {
      size_t end = text.find("*/", i + 2);
      end = end == std::string::npos ? text.size() : end + 2;
      for (; i < end; ++i)
        if (text[i] == '\n')
          out += '\n';
      --i;
    } else {
      out += text[i];
    }
  }
  return out;
}

/// Splits `text` into tokens: identifiers and directives (with their dot),
/// numbers, and single punctuation characters.
static std::vector<std::string> tokenize(const std::string &text) {
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    size_t start = i;
    if (c == '.' || isIdentChar(c)) {
      ++i;
      while (i < text.size() && (isIdentChar(text[i]) || text[i] == '.'))
        ++i;
    } else {
      ++i;
    }
    tokens.push_back(text.substr(start, i - start));
  }
  return tokens;
}

/// Bytes of a PTX fundamental type such as `.u64` or `.b8` (0: not one).
static size_t typeBytes(const std::string &type) {
  if (type.size() < 3 || type[0] != '.')
    return 0;
  char kind = type[1];
  if (kind != 'u' && kind != 's' && kind != 'b' && kind != 'f')
    return 0;
  int bits = std::atoi(type.c_str() + 2);
  if (bits != 8 && bits != 16 && bits != 32 && bits != 64)
    return 0;
  return size_t(bits) / 8;
}

static size_t alignTo(size_t value, size_t alignment) {
  return alignment ? (value + alignment - 1) / alignment * alignment : value;
}

namespace {
/// A variable declaration: `.shared .align 16 .b8 name[1024]` or a
/// parameter `.param .u64 .ptr .align 1 name`.
struct Declaration {
  std::string name;
  size_t bytes = 0, alignment = 0;
  bool unsized = false; // name[]
  bool valid = false;
};
} // namespace

/// Reads a declaration from tokens[i] up to (not including) a token in
/// `stops`; advances `i` past it.
static Declaration readDeclaration(const std::vector<std::string> &tokens,
                                   size_t &i, const std::string &stops) {
  Declaration decl;
  size_t elemBytes = 0, count = 1;
  bool isPointer = false;
  size_t explicitAlign = 0;
  for (; i < tokens.size(); ++i) {
    const std::string &t = tokens[i];
    if (t.size() == 1 && stops.find(t[0]) != std::string::npos)
      break;
    if (t == ".ptr") {
      isPointer = true;
    } else if (t == ".align" && i + 1 < tokens.size()) {
      explicitAlign = std::strtoull(tokens[++i].c_str(), nullptr, 10);
    } else if (size_t b = typeBytes(t)) {
      elemBytes = b;
    } else if (t == "[") {
      if (i + 1 < tokens.size() && tokens[i + 1] == "]") {
        decl.unsized = true;
        count = 0;
        ++i;
      } else if (i + 2 < tokens.size()) {
        count = std::strtoull(tokens[i + 1].c_str(), nullptr, 10);
        i += 2; // the number and ']'
      }
    } else if (t[0] != '.' && isIdentChar(t[0]) && decl.name.empty()) {
      decl.name = t;
    }
  }
  // On a .ptr parameter, .align is the pointee's alignment.
  decl.alignment = explicitAlign && !isPointer ? explicitAlign : elemBytes;
  decl.bytes = elemBytes * count;
  decl.valid = elemBytes != 0 && !decl.name.empty();
  return decl;
}

/// Reads `a[, b[, c]]` after a .maxntid or .reqntid directive.
static void readDims(const std::vector<std::string> &tokens, size_t &i,
                     unsigned dims[3]) {
  dims[0] = dims[1] = dims[2] = 1;
  for (int d = 0; d < 3 && i + 1 < tokens.size(); ++d) {
    const std::string &t = tokens[i + 1];
    if (t.empty() || !std::isdigit(static_cast<unsigned char>(t[0])))
      break;
    dims[d] = unsigned(std::strtoul(t.c_str(), nullptr, 10));
    ++i;
    if (i + 1 < tokens.size() && tokens[i + 1] == ",")
      ++i;
    else
      break;
  }
}

namespace {
struct SharedArray {
  size_t bytes;
  bool dynamic;
};
} // namespace

/// Reads one `.entry NAME (params) directives { body }` starting at the
/// token after `.entry`.
static bool readEntry(const std::vector<std::string> &tokens, size_t &i,
                      const std::map<std::string, SharedArray> &moduleShared,
                      PtxModule &module, std::string &error) {
  if (i >= tokens.size() || !isIdentChar(tokens[i][0])) {
    error = "expected a name after .entry";
    return false;
  }
  std::string name = tokens[i++];
  PtxEntry entry;
  if (i < tokens.size() && tokens[i] == "(") {
    ++i;
    while (i < tokens.size() && tokens[i] != ")") {
      if (tokens[i] != ".param") {
        ++i;
        continue;
      }
      Declaration param = readDeclaration(tokens, i, ",)");
      if (!param.valid) {
        error = "malformed parameter of entry " + name;
        return false;
      }
      entry.params.push_back({param.bytes, param.alignment});
      entry.paramBytes = alignTo(entry.paramBytes, param.alignment);
      entry.paramBytes += param.bytes;
      if (i < tokens.size() && tokens[i] == ",")
        ++i;
    }
    if (i >= tokens.size()) {
      error = "unterminated parameter list of entry " + name;
      return false;
    }
    ++i; // ')'
  }
  for (; i < tokens.size() && tokens[i] != "{"; ++i) {
    unsigned dims[3];
    if (tokens[i] == ".maxntid") {
      readDims(tokens, i, dims);
      entry.maxThreads = dims[0] * dims[1] * dims[2];
    } else if (tokens[i] == ".reqntid") {
      readDims(tokens, i, entry.requiredThreads);
      entry.maxThreads = entry.requiredThreads[0] * entry.requiredThreads[1] *
                         entry.requiredThreads[2];
    }
  }
  if (i >= tokens.size()) {
    error = "entry " + name + " has no body";
    return false;
  }
  int depth = 0;
  std::map<std::string, bool> mentioned;
  for (; i < tokens.size(); ++i) {
    const std::string &t = tokens[i];
    if (t == "{") {
      ++depth;
    } else if (t == "}") {
      if (--depth == 0)
        break;
    } else if (t == ".shared") {
      // An entry-scope declaration: instructions spell ld.shared as one
      // token, so a lone .shared starts a declaration.
      Declaration decl = readDeclaration(tokens, i, ";");
      if (decl.valid)
        entry.staticSharedBytes += decl.bytes;
    } else if (moduleShared.count(t)) {
      mentioned[t] = true;
    }
  }
  if (depth != 0) {
    error = "unbalanced braces in entry " + name;
    return false;
  }
  for (auto &[sharedName, unused] : mentioned) {
    const SharedArray &array = moduleShared.at(sharedName);
    if (array.dynamic)
      entry.usesDynamicShared = true;
    else
      entry.staticSharedBytes += array.bytes;
  }
  module.entries[name] = entry;
  return true;
}

bool standin::scanPtx(const std::string &text, PtxModule &module,
                      std::string &error) {
  std::vector<std::string> tokens = tokenize(stripComments(text));
  std::map<std::string, SharedArray> moduleShared;
  bool sawVersion = false, sawTarget = false;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string &t = tokens[i];
    if (t == ".version" && i + 1 < tokens.size()) {
      const std::string &v = tokens[++i];
      size_t dot = v.find('.');
      module.versionMajor = std::atoi(v.c_str());
      module.versionMinor =
          dot == std::string::npos ? 0 : std::atoi(v.c_str() + dot + 1);
      sawVersion = true;
    } else if (t == ".target" && i + 1 < tokens.size()) {
      const std::string &target = tokens[++i];
      if (target.compare(0, 3, "sm_") != 0) {
        error = "unknown target '" + target + "'";
        return false;
      }
      module.targetSM = std::atoi(target.c_str() + 3);
      sawTarget = true;
    } else if (t == ".shared") {
      // A module-scope array; `.extern` ones are dynamic shared memory.
      bool isExtern = i > 0 && tokens[i - 1] == ".extern";
      Declaration decl = readDeclaration(tokens, i, ";");
      if (decl.valid)
        moduleShared[decl.name] = {decl.bytes, isExtern || decl.unsized};
    } else if (t == ".entry") {
      ++i;
      if (!readEntry(tokens, i, moduleShared, module, error))
        return false;
    }
  }
  if (!sawVersion || !sawTarget) {
    error = "not PTX: no .version and .target directives";
    return false;
  }
  return true;
}
