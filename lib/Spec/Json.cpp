//===- Json.cpp - a small JSON reader for kernel manifests ----------------===//

#include "PagedAttn/Spec/Json.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

using namespace paged_attn;
using namespace paged_attn::json;

const Value *Value::get(const std::string &key) const {
  if (kind != Kind::Object)
    return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &it->second;
}

namespace {
class Parser {
public:
  Parser(const std::string &text) : s(text) {}

  bool parseDocument(Value &out, std::string &error) {
    skipSpace();
    if (!parseValue(out, 0))
      return fail(error);
    skipSpace();
    if (pos != s.size()) {
      message = "trailing characters";
      return fail(error);
    }
    return true;
  }

private:
  bool fail(std::string &error) {
    error = message + " at offset " + std::to_string(pos);
    return false;
  }
  void skipSpace() {
    while (pos < s.size() && std::strchr(" \t\r\n", s[pos]))
      ++pos;
  }
  bool expect(const char *word) {
    size_t n = std::strlen(word);
    if (s.compare(pos, n, word) != 0) {
      message = std::string("expected '") + word + "'";
      return false;
    }
    pos += n;
    return true;
  }
  bool parseValue(Value &v, int depth) {
    if (depth > 64) {
      message = "nesting too deep";
      return false;
    }
    if (pos >= s.size()) {
      message = "unexpected end of input";
      return false;
    }
    char c = s[pos];
    if (c == '{')
      return parseObject(v, depth);
    if (c == '[')
      return parseArray(v, depth);
    if (c == '"') {
      v.kind = Value::Kind::String;
      return parseString(v.string);
    }
    if (c == 't') {
      v.kind = Value::Kind::Bool;
      v.boolean = true;
      return expect("true");
    }
    if (c == 'f') {
      v.kind = Value::Kind::Bool;
      return expect("false");
    }
    if (c == 'n') {
      v.kind = Value::Kind::Null;
      return expect("null");
    }
    return parseNumber(v);
  }
  bool parseNumber(Value &v) {
    const char *begin = s.c_str() + pos;
    char *end = nullptr;
    double d = std::strtod(begin, &end);
    if (end == begin) {
      message = "expected a value";
      return false;
    }
    pos += end - begin;
    v.kind = Value::Kind::Number;
    v.number = d;
    return true;
  }
  bool parseString(std::string &out) {
    ++pos; // opening quote
    while (pos < s.size()) {
      char c = s[pos++];
      if (c == '"')
        return true;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos >= s.size())
        break;
      char e = s[pos++];
      switch (e) {
      case '"':
        out += '"';
        break;
      case '\\':
        out += '\\';
        break;
      case '/':
        out += '/';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        if (pos + 4 > s.size()) {
          message = "bad \\u escape";
          return false;
        }
        unsigned code = std::strtoul(s.substr(pos, 4).c_str(), nullptr, 16);
        pos += 4;
        // Manifests are ASCII; keep other code points as UTF-8.
        if (code < 0x80) {
          out += char(code);
        } else if (code < 0x800) {
          out += char(0xc0 | (code >> 6));
          out += char(0x80 | (code & 0x3f));
        } else {
          out += char(0xe0 | (code >> 12));
          out += char(0x80 | ((code >> 6) & 0x3f));
          out += char(0x80 | (code & 0x3f));
        }
        break;
      }
      default:
        message = "bad escape";
        return false;
      }
    }
    message = "unterminated string";
    return false;
  }
  bool parseArray(Value &v, int depth) {
    v.kind = Value::Kind::Array;
    ++pos;
    skipSpace();
    if (pos < s.size() && s[pos] == ']') {
      ++pos;
      return true;
    }
    while (true) {
      skipSpace();
      v.array.emplace_back();
      if (!parseValue(v.array.back(), depth + 1))
        return false;
      skipSpace();
      if (pos < s.size() && s[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < s.size() && s[pos] == ']') {
        ++pos;
        return true;
      }
      message = "expected ',' or ']'";
      return false;
    }
  }
  bool parseObject(Value &v, int depth) {
    v.kind = Value::Kind::Object;
    ++pos;
    skipSpace();
    if (pos < s.size() && s[pos] == '}') {
      ++pos;
      return true;
    }
    while (true) {
      skipSpace();
      if (pos >= s.size() || s[pos] != '"') {
        message = "expected a string key";
        return false;
      }
      std::string key;
      if (!parseString(key))
        return false;
      skipSpace();
      if (pos >= s.size() || s[pos] != ':') {
        message = "expected ':'";
        return false;
      }
      ++pos;
      skipSpace();
      if (!parseValue(v.object[key], depth + 1))
        return false;
      skipSpace();
      if (pos < s.size() && s[pos] == ',') {
        ++pos;
        continue;
      }
      if (pos < s.size() && s[pos] == '}') {
        ++pos;
        return true;
      }
      message = "expected ',' or '}'";
      return false;
    }
  }

  const std::string &s;
  size_t pos = 0;
  std::string message;
};
} // namespace

bool json::parse(const std::string &text, Value &out, std::string &error) {
  out = Value();
  return Parser(text).parseDocument(out, error);
}

bool paged_attn::json::getInteger(const Value &object, const char *key,
                                  int64_t *out) {
  const Value *v = object.get(key);
  if (!v || !v->isNumber() || !std::isfinite(v->number) ||
      v->number != std::floor(v->number) || std::fabs(v->number) > 9.0e15)
    return false;
  *out = static_cast<int64_t>(v->number);
  return true;
}
