// A small TOML reader (the subset in saliq/toml.h), one line at a time; arrays may continue over lines.
#include "saliq/toml.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <set>
#include <vector>

#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/strings.h"

namespace saliq {
namespace {

class Parser {
public:
    Parser(const std::string& text, const std::string& origin) : text_(text), origin_(origin) {}

    nlohmann::json parse() {
        nlohmann::json root = nlohmann::json::object();
        nlohmann::json* table = &root;
        while (pos_ < text_.size()) {
            skip_space_and_comments();
            if (pos_ >= text_.size()) break;
            if (peek() == '\n') {
                next();
                continue;
            }
            if (peek() == '[') {
                table = header(root);
            } else {
                const std::string key = parse_key();
                skip_blank();
                expect('=');
                skip_blank();
                nlohmann::json value = parse_value();
                if (table->contains(key)) fail("key '" + key + "' is given twice");
                (*table)[key] = std::move(value);
            }
            end_of_line();
        }
        return root;
    }

private:
    [[noreturn]] void fail(const std::string& message) const {
        throw FormatError(origin_, "line " + std::to_string(line_) + ": " + message);
    }
    char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
    char next() {
        const char c = peek();
        if (c == '\n') ++line_;
        ++pos_;
        return c;
    }
    void expect(char c) {
        if (peek() != c) fail(std::string("expected '") + c + "'");
        next();
    }
    void skip_blank() {
        while (peek() == ' ' || peek() == '\t' || peek() == '\r') next();
    }
    void skip_space_and_comments() {
        skip_blank();
        if (peek() == '#')
            while (pos_ < text_.size() && peek() != '\n') next();
    }
    // Inside arrays: newlines and comments are blank.
    void skip_all() {
        for (;;) {
            skip_space_and_comments();
            if (peek() != '\n') return;
            next();
        }
    }
    void end_of_line() {
        skip_space_and_comments();
        if (pos_ < text_.size() && peek() != '\n') fail("unexpected text after the value");
    }

    std::string parse_key() {
        if (peek() == '"') return basic_string();
        if (peek() == '\'') return literal_string();
        std::string key;
        while (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '_' || peek() == '-') key += next();
        if (key.empty()) fail("expected a key");
        return key;
    }

    nlohmann::json* header(nlohmann::json& root) {
        next();
        const bool array = peek() == '[';
        if (array) next();
        skip_blank();
        std::vector<std::string> path = {parse_key()};
        skip_blank();
        while (peek() == '.') {
            if (path.size() >= static_cast<size_t>(kMaxJsonDepth))
                fail(strprintf("table names nested deeper than %d levels", kMaxJsonDepth));
            next();
            skip_blank();
            path.push_back(parse_key());
            skip_blank();
        }
        expect(']');
        if (array) expect(']');
        nlohmann::json* t = &root;
        for (size_t i = 0; i < path.size(); ++i) {
            nlohmann::json& child = (*t)[path[i]];
            const bool last = i + 1 == path.size();
            if (last && array) {
                if (child.is_null()) child = nlohmann::json::array();
                if (!child.is_array()) fail("'" + path[i] + "' is a table, not an array of tables");
                child.push_back(nlohmann::json::object());
                return &child.back();
            }
            if (child.is_null()) child = nlohmann::json::object();
            if (child.is_array() && !child.empty()) {
                t = &child.back();  // [[row]] then [row.sub]: the last element
                continue;
            }
            if (!child.is_object()) fail("'" + path[i] + "' is a value, not a table");
            if (last && defined_.count(join(path))) fail("table [" + join(path) + "] is defined twice");
            t = &child;
        }
        defined_.insert(join(path));
        return t;
    }
    static std::string join(const std::vector<std::string>& path) {
        std::string out;
        for (const auto& p : path) out += (out.empty() ? "" : ".") + p;
        return out;
    }

    nlohmann::json parse_value() {
        const char c = peek();
        if (c == '"') {
            if (text_.compare(pos_, 3, "\"\"\"") == 0) fail("multi-line strings are not supported");
            return basic_string();
        }
        if (c == '\'') return literal_string();
        if (c == '[') return array();
        if (c == '{') fail("inline tables are not supported; use a [table]");
        if (text_.compare(pos_, 4, "true") == 0) {
            pos_ += 4;
            return true;
        }
        if (text_.compare(pos_, 5, "false") == 0) {
            pos_ += 5;
            return false;
        }
        return number();
    }

    nlohmann::json array() {
        // Each level recurses (and whatever walks the result recurses again): bounded as JSON is.
        if (++array_depth_ > kMaxJsonDepth) fail(strprintf("arrays nested deeper than %d levels", kMaxJsonDepth));
        next();
        nlohmann::json out = nlohmann::json::array();
        skip_all();
        while (peek() != ']') {
            if (pos_ >= text_.size()) fail("unterminated array");
            out.push_back(parse_value());
            skip_all();
            if (pos_ >= text_.size()) fail("unterminated array");
            if (peek() == ',') {
                next();
                skip_all();
            } else if (peek() != ']') {
                fail("expected ',' or ']' in an array");
            }
        }
        next();
        --array_depth_;
        return out;
    }

    std::string basic_string() {
        next();
        std::string out;
        for (;;) {
            if (pos_ >= text_.size() || peek() == '\n') fail("unterminated string");
            const char c = next();
            if (c == '"') return out;
            if (c != '\\') {
                out += c;
                continue;
            }
            const char e = next();
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                default: fail(std::string("unsupported escape \\") + e);
            }
        }
    }

    std::string literal_string() {
        next();
        std::string out;
        for (;;) {
            if (pos_ >= text_.size() || peek() == '\n') fail("unterminated string");
            const char c = next();
            if (c == '\'') return out;
            out += c;
        }
    }

    nlohmann::json number() {
        std::string s;
        while (std::isalnum(static_cast<unsigned char>(peek())) || peek() == '+' || peek() == '-' || peek() == '.' ||
               peek() == '_')
            if (next() != '_') s += text_[pos_ - 1];
        if (s.empty()) fail("expected a value");
        const bool is_float = s.find_first_of(".eE") != std::string::npos && s.rfind("0x", 0) != 0;
        errno = 0;
        char* end = nullptr;
        if (is_float) {
            const double v = std::strtod(s.c_str(), &end);
            if (*end != '\0' || errno != 0) fail("'" + s + "' is not a value (strings need quotes)");
            return v;
        }
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (*end != '\0' || errno != 0) fail("'" + s + "' is not a value (strings need quotes)");
        return v;
    }

    const std::string& text_;
    std::string origin_;
    size_t pos_ = 0;
    int line_ = 1;
    int array_depth_ = 0;  // arrays open at pos_
    std::set<std::string> defined_;
};

}  // namespace

nlohmann::json parse_toml(const std::string& text, const std::string& origin) { return Parser(text, origin).parse(); }

nlohmann::json read_toml_file(const std::string& path) { return parse_toml(read_text_file(path), path); }

}  // namespace saliq
