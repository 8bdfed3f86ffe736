// BoolQ (harness task "boolq", SuperGLUE): "{passage}\nQuestion: {question}?\nAnswer:" with choices ["no", "yes"],
// gold = label (the official dev file stores it as the boolean "answer").
#include "eval/tasks/tasks.h"
#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq::detail {

std::vector<McDoc> load_boolq(const std::string& path) {
    std::vector<McDoc> docs;
    for (const auto& r : read_jsonl(path)) {
        const std::string question = string_field(r.value, "question", path, r.line);
        const std::string passage = string_field(r.value, "passage", path, r.line);
        const auto answer = r.value.find("answer");
        if (answer == r.value.end())
            throw FormatError(path, strprintf("line %lld: missing field \"answer\"", (long long)r.line));
        if (!answer->is_boolean())
            throw FormatError(path, strprintf("line %lld: field \"answer\" should be true or false, got %s",
                                              (long long)r.line, answer->dump().c_str()));
        docs.push_back(shared_context_doc(passage + "\nQuestion: " + question + "?\nAnswer:", {"no", "yes"},
                                          answer->get<bool>() ? 1 : 0, r.line));
    }
    return docs;
}

}  // namespace saliq::detail
