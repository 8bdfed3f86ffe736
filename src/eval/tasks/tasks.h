// Task loaders (one per file in this folder) and the small text and JSON helpers they share. Each loader renders
// items with the lm-evaluation-harness v0.4 template of its task and throws FormatError(path, "line N: ...") for
// malformed input.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "saliq/zeroshot.h"

namespace saliq::detail {

// PIQA: valid.jsonl {"goal","sol1","sol2"} plus valid-labels.lst (0 -> sol1, 1 -> sol2).
std::vector<McDoc> load_piqa(const std::string& jsonl_path, const std::string& labels_path);
// ARC in the LLM-Adapters instruction format (MANIFEST note E): a JSON array of {"instruction","answer",...}.
std::vector<McDoc> load_arc(const std::string& path);
// HellaSwag in 6-line records (MANIFEST note F): "label: context", gold index, 4 endings.
std::vector<McDoc> load_hellaswag(const std::string& path);
// HellaSwag text steps, exposed for tests: the harness's preprocess(), Python's str.capitalize(), and the
// recovery of ctx_a + " " + ctx_b.capitalize() from the joined context.
std::string hellaswag_preprocess(const std::string& text);
std::string python_capitalize(const std::string& text);
std::string hellaswag_context(const std::string& ctx);
// WinoGrande dev.jsonl {"sentence","option1","option2","answer"}.
std::vector<McDoc> load_winogrande(const std::string& path);
// BoolQ dev.jsonl {"question","passage","answer": bool}.
std::vector<McDoc> load_boolq(const std::string& path);

// Pieces the loaders share (task_io.cpp).
struct NumberedLine {
    int64_t line = 0;  // 1-based
    std::string text;  // without the line break (and a trailing '\r')
};
// Lines of a text file; a final empty line (after the last '\n') is dropped.
std::vector<NumberedLine> read_lines(const std::string& path);

struct JsonRecord {
    int64_t line = 0;
    nlohmann::json value;  // an object
};
// One JSON object per non-blank line. FormatError(path, "line N: ...") for bad JSON or a non-object.
std::vector<JsonRecord> read_jsonl(const std::string& path);

// row[key] as a string; FormatError naming path, line and key when it is missing or not a string.
std::string string_field(const nlohmann::json& row, const char* key, const std::string& path, int64_t line);

// Python's str.strip() / rstrip() for ASCII whitespace.
std::string strip(const std::string& text);
std::string rstrip(const std::string& text);

// The harness's multiple-choice request list: (context, " " + choice) for every choice.
McDoc shared_context_doc(const std::string& context, std::vector<std::string> choices, int64_t gold, int64_t line);

}  // namespace saliq::detail
