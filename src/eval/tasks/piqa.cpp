// PIQA (harness task "piqa"): "Question: {goal}\nAnswer:" with choices [sol1, sol2], gold = label.
#include "eval/tasks/tasks.h"
#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq::detail {

std::vector<McDoc> load_piqa(const std::string& jsonl_path, const std::string& labels_path) {
    const auto records = read_jsonl(jsonl_path);
    std::vector<std::pair<int64_t, int64_t>> labels;  // (line, label)
    for (const auto& line : read_lines(labels_path)) {
        const std::string text = strip(line.text);
        if (text.empty()) continue;
        if (text != "0" && text != "1")
            throw FormatError(labels_path,
                              strprintf("line %lld: label \"%s\" is not 0 or 1", (long long)line.line, text.c_str()));
        labels.emplace_back(line.line, text == "1" ? 1 : 0);
    }
    if (labels.size() != records.size())
        throw FormatError(labels_path, strprintf("has %zu labels but %s has %zu items; the two files must align",
                                                 labels.size(), jsonl_path.c_str(), records.size()));
    std::vector<McDoc> docs;
    docs.reserve(records.size());
    for (size_t i = 0; i < records.size(); ++i) {
        const auto& r = records[i];
        const std::string goal = string_field(r.value, "goal", jsonl_path, r.line);
        std::vector<std::string> choices = {string_field(r.value, "sol1", jsonl_path, r.line),
                                            string_field(r.value, "sol2", jsonl_path, r.line)};
        docs.push_back(shared_context_doc("Question: " + goal + "\nAnswer:", std::move(choices), labels[i].second,
                                          r.line));
    }
    return docs;
}

}  // namespace saliq::detail
