//===- Json.h - a small JSON reader for kernel manifests --------*- C++ -*-===//
//
// The runtime must not depend on LLVM, so it reads manifests with this
// reader: the whole JSON grammar, values kept as a tree.
//
//===----------------------------------------------------------------------===//

#ifndef PAGEDATTN_SPEC_JSON_H
#define PAGEDATTN_SPEC_JSON_H

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paged_attn {
namespace json {

struct Value {
  enum class Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object
  } kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  std::map<std::string, Value> object;

  const Value *get(const std::string &key) const;
  bool isObject() const { return kind == Kind::Object; }
  bool isArray() const { return kind == Kind::Array; }
  bool isString() const { return kind == Kind::String; }
  bool isNumber() const { return kind == Kind::Number; }
  bool isBool() const { return kind == Kind::Bool; }
};

/// Parses `text`; on failure returns false and sets `error` to a message
/// with the byte offset.
bool parse(const std::string &text, Value &out, std::string &error);

/// The integer at `key` of `object`, if it is a number that int64_t holds
/// exactly; false otherwise.
bool getInteger(const Value &object, const char *key, int64_t *out);

} // namespace json
} // namespace paged_attn

#endif // PAGEDATTN_SPEC_JSON_H
