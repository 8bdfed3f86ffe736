// Byte-level BPE as Hugging Face's tokenizers runs a tokenizer.json (checked id for id against the `tokenizers`
// package by scripts/check_bpe.sh): added tokens, pre-tokenizer splits, GPT-2's byte alphabet, merges by rank.
#include "saliq/bpe_tokenizer.h"

#include <algorithm>
#include <climits>
#include <mutex>
#include <unordered_map>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/gguf.h"
#include "saliq/split_regex.h"
#include "saliq/strings.h"
#include "saliq/unicode.h"

namespace saliq {
namespace {

using nlohmann::json;

// GPT-2's pre-tokenizer regex (tokenizers' ByteLevel with use_regex).
const char* const kByteLevelRegex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others for U+0100 onwards.
std::vector<char32_t> byte_alphabet() {
    std::vector<char32_t> map(256);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        map[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return map;
}

enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct SplitStep {
    enum Kind { kRegex, kDigits, kPrefixSpace } kind = kRegex;
    std::shared_ptr<SplitRegex> regex;
    Behavior behavior = Behavior::kIsolated;
};

struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool special = false, lstrip = false, rstrip = false, single_word = false;
};

[[noreturn]] void unsupported(const std::string& origin, const std::string& what) {
    throw ConfigError(origin + ": " + what +
                      "; saliq runs byte-level BPE tokenizer.json files (GPT-2, LLaMA-3, SmolLM style); for a "
                      "SentencePiece model give its tokenizer.model");
}

std::string escape_literal(const std::string& text) {
    std::string out;
    for (char32_t cp : unicode::decode_utf8(text).cps) out += strprintf("\\x{%X}", static_cast<unsigned>(cp));
    return out;
}

Behavior parse_behavior(const json& step, const std::string& origin) {
    const std::string b = step.value("behavior", std::string("Isolated"));
    if (b == "Isolated") return Behavior::kIsolated;
    if (b == "Removed") return Behavior::kRemoved;
    if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
    if (b == "MergedWithNext") return Behavior::kMergedWithNext;
    if (b == "Contiguous") return Behavior::kContiguous;
    unsupported(origin, "Split behavior '" + b + "'");
}

// Flattens the pre-tokenizer into split steps; returns whether a ByteLevel step (the byte alphabet) is among them.
bool parse_pre_tokenizer(const json& pre, const std::string& origin, std::vector<SplitStep>& steps) {
    if (pre.is_null()) return false;
    if (!pre.is_object() || !pre.contains("type") || !pre["type"].is_string())
        throw FormatError(origin, "pre_tokenizer has no \"type\"");
    const std::string type = pre["type"].get<std::string>();
    if (type == "Sequence") {
        bool byte_level = false;
        if (!pre.contains("pretokenizers") || !pre["pretokenizers"].is_array())
            throw FormatError(origin, "a Sequence pre_tokenizer without \"pretokenizers\"");
        for (const auto& p : pre["pretokenizers"]) byte_level = parse_pre_tokenizer(p, origin, steps) || byte_level;
        return byte_level;
    }
    if (type == "ByteLevel") {
        if (pre.value("add_prefix_space", false)) steps.push_back({SplitStep::kPrefixSpace, nullptr, Behavior::kIsolated});
        if (pre.value("use_regex", true))
            steps.push_back({SplitStep::kRegex, std::make_shared<SplitRegex>(kByteLevelRegex), Behavior::kIsolated});
        return true;
    }
    if (type == "Digits") {
        steps.push_back({SplitStep::kDigits, nullptr,
                         pre.value("individual_digits", false) ? Behavior::kIsolated : Behavior::kContiguous});
        return false;
    }
    if (type == "Split") {
        if (pre.value("invert", false)) unsupported(origin, "an inverted Split pre-tokenizer");
        const json& pattern = pre.contains("pattern") ? pre["pattern"] : json();
        std::string regex;
        if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string())
            regex = pattern["Regex"].get<std::string>();
        else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string())
            regex = escape_literal(pattern["String"].get<std::string>());
        else
            throw FormatError(origin, "a Split pre_tokenizer without a Regex or String pattern");
        steps.push_back({SplitStep::kRegex, std::make_shared<SplitRegex>(regex), parse_behavior(pre, origin)});
        return false;
    }
    unsupported(origin, "pre-tokenizer '" + type + "'");
}

std::string token_text(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return "";
}

bool ascii_word_char(unsigned char c) { return std::isalnum(c) || c == '_'; }

}  // namespace

struct BpeTokenizer::Impl {
    std::vector<SplitStep> steps;
    json pre_tokenizer;
    std::unordered_map<std::string, int32_t> vocab;
    std::vector<std::string> tokens;        // by id ("" for gaps)
    std::vector<int> types;                 // piece_type by id
    std::vector<std::string> merges;        // "left right", by rank
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merge_of;  // (left, right) -> (rank, merged id)
    std::vector<AddedToken> added;          // longest first
    bool added_first_byte[256] = {};        // bytes an added token starts with
    std::unordered_map<int32_t, size_t> added_by_id;
    std::unordered_map<char32_t, uint8_t> byte_of;
    std::vector<std::string> byte_spelling; // byte -> its character in UTF-8
    int32_t byte_ids[256];
    int32_t unk_id = -1;
    bool ignore_merges = false;
    mutable std::mutex cache_mutex;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

    static uint64_t key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }

    // The pre-tokenizer: each step splits every piece so far.
    std::vector<std::string> pre_tokenize(const std::string& text) const {
        std::vector<std::string> pieces{text};
        for (const auto& step : steps) {
            std::vector<std::string> next;
            for (auto& piece : pieces) {
                if (step.kind == SplitStep::kPrefixSpace) {
                    next.push_back(piece.empty() || piece[0] == ' ' ? piece : " " + piece);
                    continue;
                }
                split_piece(step, piece, next);
            }
            pieces.swap(next);
        }
        return pieces;
    }

    void split_piece(const SplitStep& step, const std::string& piece, std::vector<std::string>& out) const {
        // Matches as byte ranges.
        std::vector<std::pair<size_t, size_t>> matches;
        const auto decoded = unicode::decode_utf8(piece);
        if (step.kind == SplitStep::kDigits) {
            // tokenizers' Digits splits on char::is_numeric: every numeric category (Nd, Nl, No), not only 0-9.
            for (size_t i = 0; i < decoded.cps.size(); ++i)
                if (unicode::category(decoded.cps[i]).major == 'N')
                    matches.emplace_back(decoded.offsets[i], decoded.offsets[i + 1]);
        } else {
            for (const auto& [a, b] : step.regex->find_all(decoded.cps, 0, decoded.cps.size()))
                matches.emplace_back(decoded.offsets[a], decoded.offsets[b]);
        }
        if (step.behavior == Behavior::kContiguous) {
            std::vector<std::pair<size_t, size_t>> merged;
            for (const auto& m : matches) {
                if (!merged.empty() && merged.back().second == m.first) merged.back().second = m.second;
                else merged.push_back(m);
            }
            matches.swap(merged);
        }
        std::string current;
        auto flush = [&] {
            if (!current.empty()) out.push_back(std::move(current));
            current.clear();
        };
        size_t pos = 0;
        auto emit = [&](size_t a, size_t b, bool is_match) {
            if (a == b) return;
            const std::string part = piece.substr(a, b - a);
            switch (step.behavior) {
                case Behavior::kIsolated:
                case Behavior::kContiguous: flush(); out.push_back(part); break;
                case Behavior::kRemoved: if (!is_match) { flush(); out.push_back(part); } break;
                case Behavior::kMergedWithPrevious: current += part; if (is_match) flush(); break;
                case Behavior::kMergedWithNext: if (is_match) flush(); current += part; break;
            }
        };
        for (const auto& [a, b] : matches) {
            emit(pos, a, false);
            emit(a, b, true);
            pos = b;
        }
        emit(pos, piece.size(), false);
        flush();
    }

    // One pre-token through the merges (memoized: a text repeats its words).
    void encode_word(const std::string& word, std::vector<int32_t>& out) const {
        {
            std::lock_guard<std::mutex> lock(cache_mutex);
            const auto it = cache.find(word);
            if (it != cache.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                return;
            }
        }
        std::vector<int32_t> symbols;
        if (ignore_merges) {
            std::string spelled;
            for (unsigned char b : word) spelled += byte_spelling[b];
            const auto it = vocab.find(spelled);
            if (it != vocab.end()) symbols.push_back(it->second);
        }
        if (symbols.empty()) {
            for (unsigned char b : word) {
                // A byte the vocabulary lacks: its unk token, or (as tokenizers does without one) nothing.
                const int32_t id = byte_ids[b] >= 0 ? byte_ids[b] : unk_id;
                if (id >= 0) symbols.push_back(id);
            }
            while (symbols.size() > 1) {
                int32_t best_rank = INT32_MAX, best_id = -1;
                size_t best = 0;
                for (size_t i = 0; i + 1 < symbols.size(); ++i) {
                    const auto it = merge_of.find(key(symbols[i], symbols[i + 1]));
                    if (it != merge_of.end() && it->second.first < best_rank) {
                        best_rank = it->second.first;
                        best_id = it->second.second;
                        best = i;
                    }
                }
                if (best_id < 0) break;
                symbols[best] = best_id;
                symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
            }
        }
        out.insert(out.end(), symbols.begin(), symbols.end());
        std::lock_guard<std::mutex> lock(cache_mutex);
        if (cache.size() > (1u << 20)) cache.clear();
        cache.emplace(word, std::move(symbols));
    }

    void encode_segment(const std::string& text, std::vector<int32_t>& out) const {
        if (text.empty()) return;
        for (const auto& piece : pre_tokenize(text)) encode_word(piece, out);
    }

    // The added token starting at `pos` (longest first), or null.
    const AddedToken* added_at(const std::string& text, size_t pos) const {
        if (!added_first_byte[static_cast<unsigned char>(text[pos])]) return nullptr;
        for (const auto& t : added) {
            if (text.compare(pos, t.content.size(), t.content) != 0) continue;
            if (t.single_word) {
                const size_t end = pos + t.content.size();
                if (pos > 0 && ascii_word_char(static_cast<unsigned char>(text[pos - 1]))) continue;
                if (end < text.size() && ascii_word_char(static_cast<unsigned char>(text[end]))) continue;
            }
            return &t;
        }
        return nullptr;
    }
};

BpeTokenizer::BpeTokenizer() : impl_(std::make_unique<Impl>()) {}
BpeTokenizer::~BpeTokenizer() = default;

std::shared_ptr<BpeTokenizer> BpeTokenizer::create(const json& doc, const json& config, const std::string& origin) {
    // A field of the wrong JSON type (value() and get() throw json's type_error) is a malformed file, not a crash.
    try {
        return create_checked(doc, config, origin);
    } catch (const json::exception& e) {
        throw FormatError(origin, std::string("malformed tokenizer.json or tokenizer_config.json: ") + e.what());
    }
}

std::shared_ptr<BpeTokenizer> BpeTokenizer::create_checked(const json& doc, const json& config,
                                                           const std::string& origin) {
    if (!doc.is_object() || !doc.contains("model") || !doc["model"].is_object())
        throw FormatError(origin, "not a tokenizer.json: no \"model\" object");
    auto tok = std::shared_ptr<BpeTokenizer>(new BpeTokenizer());
    Impl& m = *tok->impl_;
    tok->path_ = origin;
    const json& model = doc["model"];
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") unsupported(origin, "tokenizer model '" + type + "'");
    if (doc.contains("normalizer") && !doc["normalizer"].is_null())
        unsupported(origin, "normalizer '" + doc["normalizer"].value("type", std::string("?")) + "'");
    for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (model.contains(field) && model[field].is_string() && !model[field].get<std::string>().empty())
            unsupported(origin, std::string("BPE with a ") + field);
    if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0)
        unsupported(origin, "BPE dropout (a training-time setting)");
    m.pre_tokenizer = doc.contains("pre_tokenizer") ? doc["pre_tokenizer"] : json();
    if (!parse_pre_tokenizer(m.pre_tokenizer, origin, m.steps))
        unsupported(origin, "a pre-tokenizer without ByteLevel (the byte alphabet)");
    m.ignore_merges = model.value("ignore_merges", false);

    if (!model.contains("vocab") || !model["vocab"].is_object()) throw FormatError(origin, "model has no \"vocab\" object");
    int32_t size = 0;
    // Each id spells one string: with two, tokens[id] (what decoding prints) would be whichever was written last.
    std::unordered_map<int32_t, std::string> text_of;
    for (const auto& [text, id] : model["vocab"].items()) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24))
            throw FormatError(origin, "vocab entry '" + text + "' has no valid id");
        const auto [seen, fresh] = text_of.emplace(id.get<int32_t>(), text);
        if (!fresh)
            throw FormatError(origin, "vocab entries '" + seen->second + "' and '" + text + "' share id " +
                                          std::to_string(seen->first));
        m.vocab.emplace(text, id.get<int32_t>());
        size = std::max(size, id.get<int32_t>() + 1);
    }
    if (doc.contains("added_tokens") && doc["added_tokens"].is_array()) {
        std::unordered_map<std::string, int32_t> added_id;
        for (const auto& a : doc["added_tokens"]) {
            if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
                !a["content"].is_string() || a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() >= (1 << 24))
                throw FormatError(origin, "an added_tokens entry without an id and content");
            AddedToken t;
            t.id = a["id"].get<int32_t>();
            t.content = a["content"].get<std::string>();
            t.special = a.value("special", false);
            t.lstrip = a.value("lstrip", false);
            t.rstrip = a.value("rstrip", false);
            t.single_word = a.value("single_word", false);
            if (t.content.empty()) continue;
            // An added token may restate its vocab entry (tokenizer.json usually does); any other overlap leaves a
            // string with two ids or an id with two strings.
            const auto vocab_it = m.vocab.find(t.content);
            if (vocab_it != m.vocab.end() && vocab_it->second != t.id)
                throw FormatError(origin, "added token '" + t.content + "' has id " + std::to_string(t.id) +
                                              ", the vocab gives it " + std::to_string(vocab_it->second));
            const auto [seen, fresh] = text_of.emplace(t.id, t.content);
            if (!fresh && seen->second != t.content)
                throw FormatError(origin, "added token '" + t.content + "' takes id " + std::to_string(t.id) +
                                              ", which is '" + seen->second + "'");
            const auto [listed, first] = added_id.emplace(t.content, t.id);
            if (!first)
                throw FormatError(origin, "added token '" + t.content + "' is listed twice (ids " +
                                              std::to_string(listed->second) + " and " + std::to_string(t.id) + ")");
            size = std::max(size, t.id + 1);
            m.added_first_byte[static_cast<unsigned char>(t.content[0])] = true;
            m.added.push_back(t);
        }
    }
    // The piece table is sized by the largest id: refuse a file whose few entries claim a huge one.
    const size_t defined = m.vocab.size() + m.added.size();
    if (static_cast<size_t>(size) > defined + 65536)
        throw FormatError(origin, strprintf("token ids reach %d but only %zu tokens are defined (more than 65536 "
                                            "unused ids)", size - 1, defined));
    std::stable_sort(m.added.begin(), m.added.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    tok->vocab_size_ = size;
    m.tokens.assign(static_cast<size_t>(size), "");
    m.types.assign(static_cast<size_t>(size), 1);
    for (const auto& [text, id] : m.vocab) m.tokens[static_cast<size_t>(id)] = text;
    for (size_t i = 0; i < m.added.size(); ++i) {
        const auto& t = m.added[i];
        m.tokens[static_cast<size_t>(t.id)] = t.content;
        m.types[static_cast<size_t>(t.id)] = t.special ? 3 : 4;
        m.added_by_id[t.id] = i;
    }

    const std::vector<char32_t> alphabet = byte_alphabet();
    m.byte_spelling.resize(256);
    for (int b = 0; b < 256; ++b) {
        m.byte_of[alphabet[static_cast<size_t>(b)]] = static_cast<uint8_t>(b);
        unicode::append_utf8(m.byte_spelling[static_cast<size_t>(b)], alphabet[static_cast<size_t>(b)]);
        const auto it = m.vocab.find(m.byte_spelling[static_cast<size_t>(b)]);
        m.byte_ids[b] = it == m.vocab.end() ? -1 : it->second;
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
        const auto it = m.vocab.find(model["unk_token"].get<std::string>());
        if (it != m.vocab.end()) m.unk_id = it->second;
    }

    const json merges = model.contains("merges") ? model["merges"] : json::array();
    if (!merges.is_array()) throw FormatError(origin, "model \"merges\" is not an array");
    m.merges.reserve(merges.size());
    for (const auto& entry : merges) {
        std::string left, right;
        if (entry.is_string()) {
            const std::string s = entry.get<std::string>();
            const size_t space = s.find(' ', 1);
            if (space == std::string::npos) throw FormatError(origin, "merge '" + s + "' is not two tokens");
            left = s.substr(0, space);
            right = s.substr(space + 1);
        } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
            left = entry[0].get<std::string>();
            right = entry[1].get<std::string>();
        } else {
            throw FormatError(origin, "a merge that is neither \"a b\" nor [a, b]");
        }
        const auto a = m.vocab.find(left), b = m.vocab.find(right), ab = m.vocab.find(left + right);
        if (a == m.vocab.end() || b == m.vocab.end() || ab == m.vocab.end())
            throw FormatError(origin, "merge '" + left + " " + right + "' names a token outside the vocabulary");
        // One rank a merge: tokenizers keeps the last of two, saliq would have kept the first.
        if (!m.merge_of.emplace(Impl::key(a->second, b->second),
                                std::make_pair(static_cast<int32_t>(m.merges.size()), ab->second))
                 .second)
            throw FormatError(origin, "merge '" + left + " " + right + "' is listed twice");
        m.merges.push_back(left + " " + right);
    }

    // BOS/EOS from tokenizer_config.json; whether BOS starts a text from its add_bos_token, else from the
    // post-processor's template (LLaMA-3's TemplateProcessing puts <|begin_of_text|> first).
    auto id_of = [&](const std::string& text) -> int32_t {
        for (const auto& t : m.added)
            if (t.content == text) return t.id;
        const auto it = m.vocab.find(text);
        return it == m.vocab.end() ? -1 : it->second;
    };
    tok->add_bos_ = false;
    std::vector<const json*> processors;
    if (doc.contains("post_processor") && doc["post_processor"].is_object()) {
        const json& post = doc["post_processor"];
        if (post.value("type", std::string()) == "Sequence" && post.contains("processors") && post["processors"].is_array())
            for (const auto& p : post["processors"]) processors.push_back(&p);
        else
            processors.push_back(&post);
    }
    for (const json* p : processors) {
        if (p->value("type", std::string()) != "TemplateProcessing" || !p->contains("single")) continue;
        const json& single = (*p)["single"];
        if (single.is_array() && !single.empty() && single[0].is_object() && single[0].contains("SpecialToken")) {
            const int32_t id = id_of(single[0]["SpecialToken"].value("id", std::string()));
            if (id >= 0) {
                tok->add_bos_ = true;
                tok->bos_id_ = id;
            }
        }
    }
    if (config.is_object()) {
        if (config.contains("bos_token")) {
            const std::string bos = token_text(config["bos_token"]);
            if (!bos.empty()) tok->bos_id_ = id_of(bos);
        }
        if (config.contains("eos_token")) {
            const std::string eos = token_text(config["eos_token"]);
            if (!eos.empty()) tok->eos_id_ = id_of(eos);
        }
        if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean())
            tok->add_bos_ = config["add_bos_token"].get<bool>();
    }
    if (tok->add_bos_ && tok->bos_id_ < 0)
        throw FormatError(origin, "the tokenizer adds a BOS token but names none the vocabulary has");
    return tok;
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& text) const {
    const Impl& m = *impl_;
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 8);
    size_t segment = 0, pos = 0;
    while (pos < text.size()) {
        const AddedToken* t = m.added.empty() ? nullptr : m.added_at(text, pos);
        if (t == nullptr) {
            ++pos;
            continue;
        }
        size_t stop = pos + t->content.size(), start = pos;
        if (t->lstrip)
            while (start > segment && std::isspace(static_cast<unsigned char>(text[start - 1]))) --start;
        if (t->rstrip)
            while (stop < text.size() && std::isspace(static_cast<unsigned char>(text[stop]))) ++stop;
        m.encode_segment(text.substr(segment, start - segment), ids);
        ids.push_back(t->id);
        segment = pos = stop;
    }
    m.encode_segment(text.substr(segment), ids);
    return ids;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
    const Impl& m = *impl_;
    std::string out;
    for (int32_t id : ids) {
        check_id(id);
        if (m.added_by_id.count(id)) {
            out += m.tokens[static_cast<size_t>(id)];
            continue;
        }
        for (char32_t cp : unicode::decode_utf8(m.tokens[static_cast<size_t>(id)]).cps) {
            const auto it = m.byte_of.find(cp);
            if (it != m.byte_of.end()) out += static_cast<char>(it->second);
            else unicode::append_utf8(out, cp);
        }
    }
    return out;
}

std::string BpeTokenizer::piece(int32_t id) const {
    check_id(id);
    return impl_->tokens[static_cast<size_t>(id)];
}

float BpeTokenizer::score(int32_t id) const {
    check_id(id);
    return 0.0f;
}

int BpeTokenizer::piece_type(int32_t id) const {
    check_id(id);
    return impl_->types[static_cast<size_t>(id)];
}

const std::vector<std::string>& BpeTokenizer::merges() const { return impl_->merges; }
const json& BpeTokenizer::pre_tokenizer() const { return impl_->pre_tokenizer; }

std::shared_ptr<Tokenizer> Tokenizer::from_json(const json& tokenizer, const json& config, const std::string& origin) {
    return BpeTokenizer::create(tokenizer, config, origin);
}

std::shared_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
    const json doc = read_json_file(path);
    const std::string config_path = parent_directory(path) + "/tokenizer_config.json";
    const json config = path_exists(config_path) ? read_json_file(config_path) : json();
    return BpeTokenizer::create(doc, config, path);
}

std::shared_ptr<Tokenizer> load_gguf_vocabulary(const std::string& path) {
    const auto reader = GgufReader::open(path);
    return BpeTokenizer::create(gguf_tokenizer_json(*reader), gguf_tokenizer_config(*reader), path);
}

}  // namespace saliq
