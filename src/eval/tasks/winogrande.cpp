// WinoGrande (harness task "winogrande", partial scoring): the blank "_" splits the sentence; each option completes
// the part before it into a context, and the shared continuation is " " + the stripped part after it. Only acc.
#include "eval/tasks/tasks.h"
#include "saliq/error.h"
#include "saliq/strings.h"

namespace saliq::detail {

std::vector<McDoc> load_winogrande(const std::string& path) {
    std::vector<McDoc> docs;
    for (const auto& r : read_jsonl(path)) {
        const std::string sentence = string_field(r.value, "sentence", path, r.line);
        const std::string options[2] = {string_field(r.value, "option1", path, r.line),
                                        string_field(r.value, "option2", path, r.line)};
        const std::string answer = string_field(r.value, "answer", path, r.line);
        if (answer != "1" && answer != "2")
            throw FormatError(path, strprintf("line %lld: answer \"%s\" is not \"1\" or \"2\"", (long long)r.line,
                                              answer.c_str()));
        const size_t blank = sentence.find('_');
        if (blank == std::string::npos)
            throw FormatError(path, strprintf("line %lld: the sentence has no blank \"_\"", (long long)r.line));
        const std::string continuation = " " + strip(sentence.substr(blank + 1));
        McDoc doc;
        for (const auto& option : options) {
            doc.requests.push_back({sentence.substr(0, blank) + option, continuation});
            doc.choices.push_back(sentence.substr(0, blank) + option);  // the harness's doc_to_choice
        }
        doc.gold = answer == "1" ? 0 : 1;
        doc.line = r.line;
        docs.push_back(std::move(doc));
    }
    return docs;
}

}  // namespace saliq::detail
