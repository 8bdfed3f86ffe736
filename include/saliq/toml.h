// The part of TOML that saliq's configuration files use, read into JSON: comments, [table] and [[array of
// tables]] headers (bare or dotted names), key = value with bare or quoted keys, and values that are strings (basic
// with escapes, literal), integers, floats, booleans and arrays (also spanning lines). Dates, inline tables and
// multi-line strings are refused with the line they are on.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace saliq {

// Throws FormatError(origin, "line N: ...") on anything it cannot read, and on a key given twice.
nlohmann::json parse_toml(const std::string& text, const std::string& origin);
nlohmann::json read_toml_file(const std::string& path);

}  // namespace saliq
