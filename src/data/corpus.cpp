#include "saliq/corpus.h"

#include <sstream>

#include <nlohmann/json.hpp>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"
#include "saliq/token_cache.h"
#include "saliq/tokenizer.h"

namespace saliq {
namespace {


struct NamedCorpus {
    const char* name;
    const char* relative_path;
};

const NamedCorpus kCorpora[] = {
    {"wikitext2", "text/wikitext2/wiki.test.raw"},
    {"ptb", "text/ptb/ptb.test.txt"},
    {"c4", "text/c4/c4_validation_2k.jsonl"},
    {"tinystories", "text/tinystories/tinystories_validation_head.txt"},
};

constexpr int64_t kC4Windows = 256;
constexpr uint64_t kC4Seed = 0;

bool is_named(const std::string& name) {
    for (const auto& c : kCorpora)
        if (name == c.name) return true;
    return false;
}

}  // namespace

int64_t Rng::uniform(int64_t lo, int64_t hi) {
    if (hi < lo) throw ConfigError("empty range for a random draw");
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    if (span == 0) return static_cast<int64_t>(engine_());
    const uint64_t limit = UINT64_MAX - UINT64_MAX % span;  // reject the biased tail
    uint64_t draw;
    do draw = engine_();
    while (draw >= limit);
    return lo + static_cast<int64_t>(draw % span);
}

std::string data_dir() {
    if (const char* env = std::getenv("SALIQ_DATA_DIR"); env != nullptr && *env != '\0') return env;
    const std::string candidates[] = {"../shared/data", executable_dir() + "/../../shared/data",
                                      executable_dir() + "/../shared/data"};
    for (const auto& c : candidates)
        if (is_directory(c)) return canonical_path(c);
    return "../shared/data";
}

const std::vector<std::string>& corpus_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        for (const auto& c : kCorpora) out.emplace_back(c.name);
        return out;
    }();
    return names;
}

std::string corpus_path(const std::string& name) {
    for (const auto& c : kCorpora) {
        if (name != c.name) continue;
        const std::string path = data_dir() + "/" + c.relative_path;
        if (!path_exists(path))
            throw IoError(path, "data set '" + name + "' not found (set SALIQ_DATA_DIR to the shared data folder)");
        return path;
    }
    throw ConfigError("unknown data set '" + name + "' (expected wikitext2, ptb, c4, tinystories or a file path)");
}

std::string corpus_text(const std::string& name_or_path) {
    if (name_or_path == "c4") throw ConfigError("c4 is a document collection; use perplexity_tokens or c4_documents");
    const bool named = is_named(name_or_path);
    const std::string path = named ? corpus_path(name_or_path) : name_or_path;
    if (!named && !path_exists(path))
        throw ConfigError("'" + name_or_path + "' is neither a data set name (" + "wikitext2, ptb, c4, tinystories" +
                          ") nor an existing text file");
    const std::string raw = read_text_file(path);
    if (name_or_path == "wikitext2") {
        // Hugging Face's loader yields one row per line: "" for blank lines, else the line with its "\n";
        // GPTQ joins the rows with "\n\n".
        std::string joined;
        std::istringstream lines(raw);
        std::string line;
        bool first = true;
        while (std::getline(lines, line)) {
            if (!first) joined += "\n\n";
            first = false;
            if (line.find_first_not_of(" \t\r") != std::string::npos) joined += line + "\n";
        }
        return joined;
    }
    if (name_or_path == "ptb") {
        // ptb_text_only yields stripped lines; GPTQ joins them with a space.
        std::string joined;
        std::istringstream lines(raw);
        std::string line;
        bool first = true;
        while (std::getline(lines, line)) {
            const auto b = line.find_first_not_of(" \t\r");
            const auto e = line.find_last_not_of(" \t\r");
            if (!first) joined += " ";
            first = false;
            if (b != std::string::npos) joined += line.substr(b, e - b + 1);
        }
        return joined;
    }
    if (raw.empty()) throw FormatError(path, "text file is empty");
    return raw;
}

std::vector<std::string> c4_documents(const std::string& path) {
    std::istringstream lines(read_text_file(path));
    std::vector<std::string> docs;
    std::string line;
    int64_t number = 0;
    while (std::getline(lines, line)) {
        ++number;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        nlohmann::json row;
        try {
            row = parse_json(line, path);
        } catch (const FormatError& e) {
            throw FormatError(path, strprintf("line %lld is not valid JSON: %s", (long long)number, e.what()));
        }
        if (!row.is_object() || !row.contains("text") || !row["text"].is_string())
            throw FormatError(path, strprintf("line %lld has no string field \"text\"", (long long)number));
        docs.push_back(row["text"].get<std::string>());
    }
    if (docs.empty()) throw FormatError(path, "no documents");
    return docs;
}

std::vector<int32_t> perplexity_tokens(const std::string& name_or_path, const Tokenizer& tokenizer, int64_t seqlen,
                                       double begin, double end) {
    if (name_or_path != "c4") {
        std::vector<int32_t> tokens = tokenizer.prefix();
        const auto body = encode_cached(tokenizer, corpus_text(name_or_path));
        tokens.insert(tokens.end(), body.begin(), body.end());
        const auto n = static_cast<double>(tokens.size());
        const auto lo = static_cast<std::ptrdiff_t>(begin * n), hi = static_cast<std::ptrdiff_t>(end * n);
        return std::vector<int32_t>(tokens.begin() + lo, tokens.begin() + hi);
    }
    const std::string path = corpus_path("c4");
    auto docs = c4_documents(path);
    const auto n = static_cast<double>(docs.size());
    docs = std::vector<std::string>(docs.begin() + static_cast<std::ptrdiff_t>(begin * n),
                                    docs.begin() + static_cast<std::ptrdiff_t>(end * n));
    if (docs.empty()) throw ConfigError("the evaluation range of c4 holds no document");
    Rng rng(kC4Seed);
    std::vector<int32_t> tokens;
    tokens.reserve(static_cast<size_t>(kC4Windows * seqlen));
    int64_t attempts = 0;
    for (int64_t w = 0; w < kC4Windows; ++w) {
        std::vector<int32_t> doc;
        do {
            if (++attempts > 100000)
                throw ConfigError(strprintf("c4: too few documents reach %lld tokens; use a smaller --seqlen",
                                            (long long)seqlen));
            const auto& text = docs[static_cast<size_t>(rng.uniform(0, static_cast<int64_t>(docs.size()) - 1))];
            doc = tokenizer.prefix();
            const auto body = tokenizer.encode(text);
            doc.insert(doc.end(), body.begin(), body.end());
        } while (static_cast<int64_t>(doc.size()) < seqlen + 1);
        const int64_t start = rng.uniform(0, static_cast<int64_t>(doc.size()) - seqlen - 1);
        tokens.insert(tokens.end(), doc.begin() + start, doc.begin() + start + seqlen);
    }
    return tokens;
}

}  // namespace saliq
