#include <utility>

#include "eval/tasks/tasks.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"

namespace saliq::detail {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

std::vector<NumberedLine> read_lines(const std::string& path) {
    const std::string text = read_text_file(path);
    std::vector<NumberedLine> lines;
    size_t begin = 0;
    int64_t number = 1;
    while (begin < text.size()) {
        size_t end = text.find('\n', begin);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(begin, end - begin);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back({number++, std::move(line)});
        begin = end + 1;
    }
    return lines;
}

std::vector<JsonRecord> read_jsonl(const std::string& path) {
    std::vector<JsonRecord> records;
    for (auto& line : read_lines(path)) {
        if (strip(line.text).empty()) continue;
        JsonRecord record{line.line, {}};
        try {
            record.value = parse_json(line.text, path);
        } catch (const FormatError& e) {
            throw FormatError(path, strprintf("line %lld is not valid JSON: %s", (long long)line.line, e.what()));
        }
        if (!record.value.is_object())
            throw FormatError(path, strprintf("line %lld: expected a JSON object, got %s", (long long)line.line,
                                              record.value.type_name()));
        records.push_back(std::move(record));
    }
    return records;
}

std::string string_field(const nlohmann::json& row, const char* key, const std::string& path, int64_t line) {
    const auto it = row.find(key);
    if (it == row.end())
        throw FormatError(path, strprintf("line %lld: missing field \"%s\"", (long long)line, key));
    if (!it->is_string())
        throw FormatError(path, strprintf("line %lld: field \"%s\" should be a string, got %s", (long long)line, key,
                                          it->type_name()));
    return it->get<std::string>();
}

std::string strip(const std::string& text) {
    size_t begin = 0;
    while (begin < text.size() && is_space(text[begin])) ++begin;
    size_t end = text.size();
    while (end > begin && is_space(text[end - 1])) --end;
    return text.substr(begin, end - begin);
}

std::string rstrip(const std::string& text) {
    size_t end = text.size();
    while (end > 0 && is_space(text[end - 1])) --end;
    return text.substr(0, end);
}

McDoc shared_context_doc(const std::string& context, std::vector<std::string> choices, int64_t gold, int64_t line) {
    McDoc doc;
    for (const auto& choice : choices) doc.requests.push_back({context, " " + choice});
    doc.choices = std::move(choices);
    doc.gold = gold;
    doc.line = line;
    return doc;
}

}  // namespace saliq::detail
