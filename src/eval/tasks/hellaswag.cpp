// HellaSwag (harness task "hellaswag"). The harness renders
//   query   = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())
//   choices = [preprocess(ending) for ending in endings],  gold = int(label)
// Our copy (MANIFEST note F) comes in 6-line records: "activity_label: ctx", the label, then the 4 endings, with
// most WikiHow tags already removed and ctx = ctx_a + " " + ctx_b joined. We re-apply the harness's preprocess and
// recover ctx_b: WikiHow items ("How to ..." ending in a full sentence) have an empty ctx_b; for ActivityNet items
// ctx_b is the trailing noun phrase after the last ". " (checked on all 10,042 validation items: every such
// fragment is lower-case and free of abbreviations).
#include <cctype>

#include "eval/tasks/tasks.h"
#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq::detail {

// The harness's preprocess: strip, " [title]" -> ". ", drop every non-greedy "[...]" span, then one left-to-right
// pass replacing "  " with " " (Python str.replace, so three spaces become two).
std::string hellaswag_preprocess(const std::string& raw) {
    std::string text = strip(raw);
    std::string titled;
    const std::string title = " [title]";
    for (size_t i = 0; i < text.size();) {
        if (text.compare(i, title.size(), title) == 0) {
            titled += ". ";
            i += title.size();
        } else {
            titled += text[i++];
        }
    }
    std::string unbracketed;
    for (size_t i = 0; i < titled.size();) {
        if (titled[i] == '[') {
            const size_t close = titled.find(']', i + 1);
            if (close != std::string::npos) {
                i = close + 1;
                continue;
            }
        }
        unbracketed += titled[i++];
    }
    std::string out;
    for (size_t i = 0; i < unbracketed.size();) {
        if (unbracketed[i] == ' ' && i + 1 < unbracketed.size() && unbracketed[i + 1] == ' ') {
            out += ' ';
            i += 2;
        } else {
            out += unbracketed[i++];
        }
    }
    return out;
}

// Python's str.capitalize() for ASCII: first character upper-cased, the rest lower-cased.
std::string python_capitalize(const std::string& text) {
    std::string out = text;
    for (size_t i = 0; i < out.size(); ++i) {
        const auto c = static_cast<unsigned char>(out[i]);
        out[i] = static_cast<char>(i == 0 ? std::toupper(c) : std::tolower(c));
    }
    return out;
}

// ctx (= ctx_a + " " + ctx_b) with ctx_b capitalized as the harness does.
std::string hellaswag_context(const std::string& ctx) {
    const bool wikihow = starts_with(ctx, "How to ") && !ctx.empty() && std::string(".!?\"").find(ctx.back()) !=
                                                                             std::string::npos;
    if (wikihow) return ctx;
    const size_t sentence_end = ctx.rfind(". ");
    if (sentence_end == std::string::npos) return python_capitalize(ctx);
    return ctx.substr(0, sentence_end + 2) + python_capitalize(ctx.substr(sentence_end + 2));
}

std::vector<McDoc> load_hellaswag(const std::string& path) {
    const auto lines = read_lines(path);
    constexpr size_t kRecord = 6;
    if (lines.size() % kRecord != 0)
        throw FormatError(path, strprintf("has %zu lines, not a multiple of 6 (context, label, 4 endings per item); "
                                          "the record starting at line %zu is incomplete",
                                          lines.size(), lines.size() - lines.size() % kRecord + 1));
    std::vector<McDoc> docs;
    docs.reserve(lines.size() / kRecord);
    for (size_t r = 0; r < lines.size(); r += kRecord) {
        const auto& head = lines[r];
        const size_t colon = head.text.find(": ");
        if (colon == std::string::npos)
            throw FormatError(path, strprintf("line %lld: expected \"activity label: context\", got \"%s\"",
                                              (long long)head.line, head.text.c_str()));
        const auto& label_line = lines[r + 1];
        const std::string label = strip(label_line.text);
        if (label.size() != 1 || label[0] < '0' || label[0] > '3')
            throw FormatError(path, strprintf("line %lld: label \"%s\" is not an integer 0-3 (records are 6 lines: "
                                              "context, label, 4 endings)",
                                              (long long)label_line.line, label_line.text.c_str()));
        const std::string query =
            hellaswag_preprocess(head.text.substr(0, colon + 2) + hellaswag_context(head.text.substr(colon + 2)));
        std::vector<std::string> choices;
        for (size_t e = 0; e < 4; ++e) choices.push_back(hellaswag_preprocess(lines[r + 2 + e].text));
        docs.push_back(shared_context_doc(query, std::move(choices), label[0] - '0', head.line));
    }
    return docs;
}

}  // namespace saliq::detail
