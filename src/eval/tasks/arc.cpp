// ARC-Easy / ARC-Challenge (harness tasks "arc_easy", "arc_challenge"): "Question: {question}\nAnswer:" with the
// choice texts as choices. Our copy is the LLM-Adapters instruction format (MANIFEST note E), from which the question
// and choices are recovered:
//   "Please choose the correct answer to the question: <stem>\n\nAnswer1: <c1> Answer2: <c2> ... AnswerN: <cN>
//    \n\nAnswer format: answer1/.../answerN",   answer "answerK" (1-based).
#include <algorithm>

#include "eval/tasks/tasks.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"

namespace saliq::detail {
namespace {

const std::string kPrefix = "Please choose the correct answer to the question: ";
const std::string kFirstChoice = "\n\nAnswer1: ";
const std::string kFormat = "\n\nAnswer format: ";

int64_t line_at(const std::string& text, size_t offset) {
    offset = std::min(offset, text.size());
    return 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
}

// Byte offsets of the elements of a top-level JSON array (where each element starts), so that errors can name lines.
std::vector<size_t> array_element_offsets(const std::string& text) {
    std::vector<size_t> offsets;
    int depth = 0;
    bool in_string = false, escaped = false, expect_element = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        if (depth == 1 && expect_element && c != ']') offsets.push_back(i);
        expect_element = depth == 1 && c == ',';
        if (c == '"') in_string = true;
        else if (c == '[' || c == '{') {
            ++depth;
            if (depth == 1) expect_element = true;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return offsets;
}

McDoc parse_item(const nlohmann::json& item, const std::string& path, int64_t line) {
    if (!item.is_object())
        throw FormatError(path, strprintf("line %lld: expected a JSON object, got %s", (long long)line, item.type_name()));
    const std::string instruction = string_field(item, "instruction", path, line);
    const std::string answer = string_field(item, "answer", path, line);
    auto fail = [&](const std::string& what) { throw FormatError(path, strprintf("line %lld: ", (long long)line) + what); };

    if (!starts_with(instruction, kPrefix)) fail("instruction does not start with \"" + kPrefix + "\"");
    const size_t first = instruction.find(kFirstChoice);
    if (first == std::string::npos) fail("instruction has no \"Answer1:\" choice list");
    const size_t format = instruction.rfind(kFormat);
    if (format == std::string::npos || format < first) fail("instruction has no \"Answer format:\" line after the choices");

    // The format line names the choices: answer1/answer2/.../answerN.
    const auto names = split(strip(instruction.substr(format + kFormat.size())), '/');
    for (size_t i = 0; i < names.size(); ++i)
        if (names[i] != "answer" + std::to_string(i + 1))
            fail("the \"Answer format:\" line should read answer1/answer2/..., got \"" +
                 instruction.substr(format + kFormat.size()) + "\"");
    if (names.size() < 2) fail("fewer than two choices");

    std::vector<std::string> choices;
    size_t begin = first + kFirstChoice.size();
    for (size_t k = 2; k <= names.size(); ++k) {
        const std::string marker = " Answer" + std::to_string(k) + ": ";
        const size_t at = instruction.find(marker, begin);
        if (at == std::string::npos || at > format)
            fail(strprintf("choice marker \"Answer%zu:\" not found (the format line announces %zu choices)", k,
                           names.size()));
        choices.push_back(instruction.substr(begin, at - begin));
        begin = at + marker.size();
    }
    choices.push_back(instruction.substr(begin, format - begin));

    const std::string question = instruction.substr(kPrefix.size(), first - kPrefix.size());
    int64_t gold = -1;
    for (size_t i = 0; i < names.size(); ++i)
        if (answer == names[i]) gold = static_cast<int64_t>(i);
    if (gold < 0)
        fail(strprintf("answer \"%s\" is not one of answer1..answer%zu", answer.c_str(), names.size()));
    return shared_context_doc("Question: " + question + "\nAnswer:", std::move(choices), gold, line);
}

}  // namespace

std::vector<McDoc> load_arc(const std::string& path) {
    const std::string text = read_text_file(path);
    nlohmann::json items;
    try {
        items = parse_json(text, path);  // also refuses keys listed twice and deep nesting
    } catch (const FormatError&) {
        try {  // a syntax error: name its line
            const nlohmann::json parsed = nlohmann::json::parse(text);  // throws here, at the line to name
            (void)parsed;
        } catch (const nlohmann::json::parse_error& e) {
            throw FormatError(path, strprintf("line %lld is not valid JSON: %s", (long long)line_at(text, e.byte),
                                              e.what()));
        } catch (const nlohmann::json::exception&) {
        }
        throw;
    }
    if (!items.is_array()) throw FormatError(path, "expected a JSON array of items, got " + std::string(items.type_name()));
    const auto offsets = array_element_offsets(text);
    std::vector<McDoc> docs;
    docs.reserve(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
        const int64_t line = i < offsets.size() ? line_at(text, offsets[i]) : 0;
        docs.push_back(parse_item(items[i], path, line));
    }
    return docs;
}

}  // namespace saliq::detail
