// A backtracking matcher for the pre-tokenizer regexes: the pattern is parsed into a small tree, compiled to
// instructions (split/jump, as in Thompson's construction) and run depth-first, the preferred branch first, which
// is the leftmost-first (Perl/Oniguruma) order tokenizers relies on.
#include "saliq/split_regex.h"

#include <memory>

#include "saliq/error.h"
#include "saliq/strings.h"
#include "saliq/unicode.h"

namespace saliq {
namespace {

struct Node {
    enum Kind { kLit, kClass, kAny, kBegin, kEnd, kSeq, kAlt, kRepeat, kLook } kind = kSeq;
    char32_t c = 0;
    bool fold = false;
    uint32_t cls = 0;
    int min = 0, max = 0;  // kRepeat; max -1: unbounded
    bool greedy = true;
    bool negate = false;   // kLook
    std::vector<Node> kids;
};

bool nullable(const Node& n) {
    switch (n.kind) {
        case Node::kLit: case Node::kClass: case Node::kAny: return false;
        case Node::kBegin: case Node::kEnd: case Node::kLook: return true;
        case Node::kSeq:
            for (const auto& k : n.kids)
                if (!nullable(k)) return false;
            return true;
        case Node::kAlt:
            for (const auto& k : n.kids)
                if (nullable(k)) return true;
            return false;
        case Node::kRepeat: return n.min == 0 || nullable(n.kids[0]);
    }
    return true;
}

// Limits on what a pattern may ask for: groups nest at most kMaxGroupDepth deep (parsing, compiling and freeing the
// tree recurse once per level), and counted repeats, which copy their body, compile to at most kMaxInstructions
// (((a{1000}){1000}){1000} would be 10^9). The tokenizers' patterns nest three groups and compile to a few hundred.
constexpr int kMaxGroupDepth = 64;
constexpr size_t kMaxInstructions = size_t{1} << 20;

class Parser {
public:
    Parser(const std::string& pattern, std::vector<SplitRegex::CharClass>& classes)
        : source_(pattern), classes_(classes) {
        p_ = unicode::decode_utf8(pattern).cps;
    }

    Node parse() {
        Node n = alternation(false);
        if (i_ < p_.size()) fail("unbalanced ')'");
        return n;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw ConfigError(strprintf("regex /%s/: %s at character %zu", source_.c_str(), what.c_str(), i_));
    }
    bool more() const { return i_ < p_.size(); }
    char32_t peek(size_t ahead = 0) const { return i_ + ahead < p_.size() ? p_[i_ + ahead] : 0; }

    Node alternation(bool fold) {
        Node alt;
        alt.kind = Node::kAlt;
        alt.kids.push_back(sequence(fold));
        while (more() && peek() == '|') {
            ++i_;
            alt.kids.push_back(sequence(fold));
        }
        return alt.kids.size() == 1 ? std::move(alt.kids[0]) : alt;
    }

    Node sequence(bool fold) {
        Node seq;
        seq.kind = Node::kSeq;
        while (more() && peek() != '|' && peek() != ')') {
            Node atom_node = atom(fold);
            seq.kids.push_back(quantified(std::move(atom_node)));
        }
        return seq;
    }

    Node quantified(Node atom_node) {
        if (!more()) return atom_node;
        int lo = 0, hi = 0;
        const char32_t q = peek();
        if (q == '?') { lo = 0; hi = 1; ++i_; }
        else if (q == '*') { lo = 0; hi = -1; ++i_; }
        else if (q == '+') { lo = 1; hi = -1; ++i_; }
        else if (q == '{' && counted(lo, hi)) {}
        else return atom_node;
        if (atom_node.kind == Node::kBegin || atom_node.kind == Node::kEnd || atom_node.kind == Node::kLook)
            fail("quantifier after an assertion");
        Node rep;
        rep.kind = Node::kRepeat;
        rep.min = lo;
        rep.max = hi;
        if (more() && peek() == '?') { rep.greedy = false; ++i_; }
        else if (more() && peek() == '+') fail("possessive quantifiers are not supported");
        if (hi < 0 && nullable(atom_node)) fail("an unbounded repeat of something that can match nothing");
        rep.kids.push_back(std::move(atom_node));
        return rep;
    }

    // {n}, {n,}, {n,m}; anything else after '{' is a literal brace, as in Oniguruma.
    bool counted(int& lo, int& hi) {
        size_t j = i_ + 1;
        auto number = [&](int& out) {
            const size_t start = j;
            out = 0;
            while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9' && out < 100000) out = out * 10 + int(p_[j++] - '0');
            return j > start;
        };
        if (!number(lo)) return false;
        hi = lo;
        if (j < p_.size() && p_[j] == ',') {
            ++j;
            if (!number(hi)) hi = -1;
        }
        if (j >= p_.size() || p_[j] != '}') return false;
        if (hi >= 0 && hi < lo) fail("a {m,n} repeat with n < m");
        if (lo > 1000 || hi > 1000) fail("a repeat count over 1000");
        i_ = j + 1;
        return true;
    }

    Node atom(bool fold) {
        const char32_t ch = p_[i_++];
        Node n;
        switch (ch) {
            case '(': return group(fold);
            case '[': n.kind = Node::kClass; n.cls = char_class(); return n;
            case '.': n.kind = Node::kAny; return n;
            case '^': n.kind = Node::kBegin; return n;
            case '$': n.kind = Node::kEnd; return n;
            case '*': case '+': case '?': fail("nothing to repeat");
            case '\\': {
                SplitRegex::ClassItem item;
                char32_t literal = 0;
                if (escape(item, literal)) {
                    SplitRegex::CharClass cls;
                    cls.items.push_back(item);
                    classes_.push_back(cls);
                    n.kind = Node::kClass;
                    n.cls = static_cast<uint32_t>(classes_.size() - 1);
                    return n;
                }
                n.kind = Node::kLit;
                n.c = literal;
                n.fold = fold;
                return n;
            }
            default:
                n.kind = Node::kLit;
                n.c = ch;
                n.fold = fold;
                return n;
        }
    }

    Node group(bool fold) {
        if (++depth_ > kMaxGroupDepth) fail(strprintf("groups nested more than %d deep", kMaxGroupDepth));
        Node look;
        bool is_look = false;
        if (peek() == '?') {
            const char32_t kind = peek(1);
            if (kind == ':') { i_ += 2; }
            else if (kind == 'i' && peek(2) == ':') { i_ += 3; fold = true; }
            else if (kind == '=' || kind == '!') { i_ += 2; is_look = true; look.negate = kind == '!'; }
            else if (kind == '<') fail("lookbehind is not supported");
            else fail("this group kind is not supported");
        }
        Node body = alternation(fold);
        if (!more() || peek() != ')') fail("missing ')'");
        ++i_;
        --depth_;
        if (!is_look) return body;
        look.kind = Node::kLook;
        look.kids.push_back(std::move(body));
        return look;
    }

    // After a backslash: a class escape (returns true, fills `item`) or a literal (returns false, fills `literal`).
    bool escape(SplitRegex::ClassItem& item, char32_t& literal) {
        if (!more()) fail("a trailing backslash");
        const char32_t e = p_[i_++];
        using K = SplitRegex::ClassItem;
        switch (e) {
            case 's': case 'S': item.kind = K::kSpace; item.negated = e == 'S'; return true;
            case 'd': case 'D': item.kind = K::kDigit; item.negated = e == 'D'; return true;
            case 'w': case 'W': item.kind = K::kWord; item.negated = e == 'W'; return true;
            case 'p': case 'P': {
                item.kind = K::kCategory;
                item.negated = e == 'P';
                if (peek() != '{') fail("\\p without {category}");
                ++i_;
                std::u32string name;
                while (more() && peek() != '}') name += p_[i_++];
                if (!more()) fail("an unterminated \\p{");
                ++i_;
                if (!name.empty() && name[0] == '^') { item.negated = !item.negated; name.erase(0, 1); }
                static const std::string majors = "LMNPSZC";
                if (name.size() < 1 || name.size() > 2 || majors.find(static_cast<char>(name[0])) == std::string::npos ||
                    (name.size() == 2 && !(name[1] >= 'a' && name[1] <= 'z')))
                    fail("only general categories (\\p{L}, \\p{Lu}, ...) are supported");
                item.major = static_cast<char>(name[0]);
                item.minor = name.size() == 2 ? static_cast<char>(name[1]) : 0;
                return true;
            }
            case 'r': literal = '\r'; return false;
            case 'n': literal = '\n'; return false;
            case 't': literal = '\t'; return false;
            case 'f': literal = '\f'; return false;
            case 'v': literal = '\v'; return false;
            case 'a': literal = 0x07; return false;
            case 'e': literal = 0x1B; return false;
            case 'x': case 'u': {
                const bool braces = peek() == '{';
                if (braces) ++i_;
                const size_t digits = braces ? 8 : e == 'x' ? 2 : 4;
                char32_t value = 0;
                size_t count = 0;
                while (more() && count < digits) {
                    const char32_t h = peek();
                    const int v = h >= '0' && h <= '9' ? int(h - '0') : h >= 'a' && h <= 'f' ? int(h - 'a' + 10)
                                : h >= 'A' && h <= 'F' ? int(h - 'A' + 10) : -1;
                    if (v < 0) break;
                    value = value * 16 + static_cast<char32_t>(v);
                    ++i_;
                    ++count;
                }
                if (count == 0) fail("a \\x or \\u escape without hex digits");
                if (braces) {
                    if (peek() != '}') fail("an unterminated \\x{");
                    ++i_;
                }
                literal = value;
                return false;
            }
            default:
                if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
                    fail(std::string("the escape \\") + static_cast<char>(e) + " is not supported");
                literal = e;  // an escaped punctuation character stands for itself
                return false;
        }
    }

    uint32_t char_class() {
        SplitRegex::CharClass cls;
        if (peek() == '^') { cls.negated = true; ++i_; }
        bool first = true;
        while (true) {
            if (!more()) fail("an unterminated [");
            char32_t ch = p_[i_];
            if (ch == ']' && !first) { ++i_; break; }
            first = false;
            if (ch == '[') fail("nested classes are not supported");
            if (ch == '&' && peek(1) == '&') fail("class intersection is not supported");
            ++i_;
            SplitRegex::ClassItem item;
            char32_t lo = ch;
            if (ch == '\\') {
                if (escape(item, lo)) {
                    cls.items.push_back(item);
                    continue;
                }
            }
            char32_t hi = lo;
            if (peek() == '-' && peek(1) != ']' && i_ + 1 < p_.size()) {
                i_ += 1;
                hi = p_[i_++];
                if (hi == '\\') {
                    SplitRegex::ClassItem unused;
                    if (escape(unused, hi)) fail("a range ending in a class escape");
                }
                if (hi < lo) fail("a reversed range in a class");
            }
            item.kind = SplitRegex::ClassItem::kRange;
            item.lo = lo;
            item.hi = hi;
            cls.items.push_back(item);
        }
        classes_.push_back(std::move(cls));
        return static_cast<uint32_t>(classes_.size() - 1);
    }

    std::string source_;
    std::vector<char32_t> p_;
    size_t i_ = 0;
    int depth_ = 0;  // groups open at i_
    std::vector<SplitRegex::CharClass>& classes_;
};

class Compiler {
public:
    Compiler(std::vector<SplitRegex::Inst>& program, const std::string& pattern) : out_(program), pattern_(pattern) {}

    void emit(const Node& n) {
        using Op = SplitRegex::Op;
        switch (n.kind) {
            case Node::kLit: push({Op::kChar, n.fold, false, n.c}); return;
            case Node::kClass: { auto in = inst(Op::kClass); in.x = n.cls; push(in); return; }
            case Node::kAny: push(inst(Op::kAny)); return;
            case Node::kBegin: push(inst(Op::kBegin)); return;
            case Node::kEnd: push(inst(Op::kEnd)); return;
            case Node::kSeq:
                for (const auto& k : n.kids) emit(k);
                return;
            case Node::kAlt: {
                std::vector<size_t> jumps;
                for (size_t k = 0; k + 1 < n.kids.size(); ++k) {
                    const size_t split = push(inst(Op::kSplit));
                    out_[split].x = here();
                    emit(n.kids[k]);
                    jumps.push_back(push(inst(Op::kJmp)));
                    out_[split].y = here();
                }
                emit(n.kids.back());
                for (size_t j : jumps) out_[j].x = here();
                return;
            }
            case Node::kRepeat: {
                for (int k = 0; k < n.min; ++k) emit(n.kids[0]);
                if (n.max < 0) {
                    const size_t split = push(inst(Op::kSplit));
                    emit(n.kids[0]);
                    auto back = inst(Op::kJmp);
                    back.x = static_cast<uint32_t>(split);
                    push(back);
                    branch(split, static_cast<uint32_t>(split + 1), here(), n.greedy);
                    return;
                }
                std::vector<size_t> splits;
                for (int k = n.min; k < n.max; ++k) {
                    splits.push_back(push(inst(Op::kSplit)));
                    emit(n.kids[0]);
                }
                for (size_t s : splits) branch(s, static_cast<uint32_t>(s + 1), here(), n.greedy);
                return;
            }
            case Node::kLook: {
                // look(x: the sub-program, y: after it) ... sub-program ... match
                auto look = inst(Op::kLook);
                look.negate = n.negate;
                const size_t at = push(look);
                out_[at].x = here();
                emit(n.kids[0]);
                push(inst(Op::kMatch));
                out_[at].y = here();
                return;
            }
        }
    }

    uint32_t here() const { return static_cast<uint32_t>(out_.size()); }
    size_t push(const SplitRegex::Inst& in) {
        if (out_.size() >= kMaxInstructions)
            throw ConfigError(strprintf("regex /%s/ compiles to more than %zu instructions (counted repeats inside "
                                        "counted repeats multiply)",
                                        pattern_.c_str(), kMaxInstructions));
        out_.push_back(in);
        return out_.size() - 1;
    }

private:
    static SplitRegex::Inst inst(SplitRegex::Op op) {
        SplitRegex::Inst in;
        in.op = op;
        return in;
    }
    void branch(size_t split, uint32_t body, uint32_t skip, bool greedy) {
        out_[split].x = greedy ? body : skip;
        out_[split].y = greedy ? skip : body;
    }
    std::vector<SplitRegex::Inst>& out_;
    const std::string& pattern_;
};

char32_t simple_fold(char32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';   // LATIN SMALL LETTER LONG S
    if (c == 0x212A) return 'k';  // KELVIN SIGN
    return c;
}

bool item_matches(const SplitRegex::ClassItem& item, char32_t c) {
    using K = SplitRegex::ClassItem;
    bool hit = false;
    switch (item.kind) {
        case K::kRange: hit = c >= item.lo && c <= item.hi; break;
        case K::kSpace: hit = unicode::is_white_space(c); break;
        case K::kCategory: {
            const auto cat = unicode::category(c);
            hit = cat.major == item.major && (item.minor == 0 || cat.minor == item.minor);
            break;
        }
        case K::kDigit: {
            const auto cat = unicode::category(c);
            hit = cat.major == 'N' && cat.minor == 'd';
            break;
        }
        case K::kWord: {
            const auto cat = unicode::category(c);
            hit = cat.major == 'L' || cat.major == 'M' || (cat.major == 'N' && cat.minor == 'd') ||
                  (cat.major == 'P' && cat.minor == 'c');
            break;
        }
    }
    return hit != item.negated;
}

bool class_matches(const SplitRegex::CharClass& cls, char32_t c) {
    bool hit = false;
    for (const auto& item : cls.items)
        if (item_matches(item, c)) {
            hit = true;
            break;
        }
    return hit != cls.negated;
}

}  // namespace

SplitRegex::SplitRegex(const std::string& pattern) : pattern_(pattern) {
    Parser parser(pattern, classes_);
    const Node tree = parser.parse();
    Compiler compiler(program_, pattern_);
    compiler.emit(tree);
    Inst match;
    match.op = Op::kMatch;
    compiler.push(match);
}

// Backtracking can go exponential on nested repeats ((a+)+b), and a pattern bounded at each position can still be
// quadratic or worse over a text (a*a*c on a long run of a's). The pre-tokenizers' regexes take a few dozen steps
// per character, so each text gets a budget proportional to its length: a pathological pattern is refused in well
// under a second instead of tokenizing for half an hour.
constexpr size_t kStepsPerChar = 256;
constexpr size_t kStepsPerText = 1024;
constexpr size_t kNone = static_cast<size_t>(-1);  // run's "no match"

size_t SplitRegex::run(uint32_t pc0, const char32_t* text, size_t pos0, size_t begin, size_t end, size_t& steps,
                       size_t budget, bool to_end) const {
    std::vector<std::pair<uint32_t, size_t>> stack;
    stack.emplace_back(pc0, pos0);
    while (!stack.empty()) {
        if (++steps > budget)
            throw ConfigError(strprintf("regex /%s/ backtracks too much on this text (over %zu steps for "
                                        "%zu characters; the pre-tokenizers' patterns take a few dozen a character)",
                                        pattern_.c_str(), budget, end - begin));
        uint32_t pc = stack.back().first;
        size_t pos = stack.back().second;
        stack.pop_back();
        for (bool alive = true; alive;) {
            const Inst& in = program_[pc];
            switch (in.op) {
                case Op::kChar:
                    alive = pos < end && (text[pos] == in.c || (in.fold && simple_fold(text[pos]) == simple_fold(in.c)));
                    ++pc, ++pos;
                    break;
                case Op::kClass:
                    alive = pos < end && class_matches(classes_[in.x], text[pos]);
                    ++pc, ++pos;
                    break;
                case Op::kAny:
                    alive = pos < end && text[pos] != '\n';
                    ++pc, ++pos;
                    break;
                case Op::kBegin: alive = pos == begin; ++pc; break;
                case Op::kEnd: alive = pos == end; ++pc; break;
                case Op::kSplit:
                    stack.emplace_back(in.y, pos);
                    pc = in.x;
                    break;
                case Op::kJmp: pc = in.x; break;
                case Op::kMatch:
                    if (!to_end || pos == end) return pos;
                    alive = false;  // ended early: backtrack into the other branches
                    break;
                case Op::kLook:
                    alive = (run(in.x, text, pos, begin, end, steps, budget, false) != kNone) != in.negate;
                    pc = in.y;
                    break;
            }
        }
    }
    return kNone;
}

std::vector<std::pair<size_t, size_t>> SplitRegex::find_all(const std::vector<char32_t>& text, size_t begin,
                                                            size_t end) const {
    std::vector<std::pair<size_t, size_t>> out;
    size_t pos = begin, steps = 0;
    const size_t budget = kStepsPerText + kStepsPerChar * (end - begin);
    while (pos < end) {
        const size_t stop = run(0, text.data(), pos, begin, end, steps, budget, false);
        if (stop != kNone && stop > pos) {
            out.emplace_back(pos, stop);
            pos = stop;
        } else {
            ++pos;
        }
    }
    return out;
}

bool SplitRegex::full_match(const std::vector<char32_t>& text) const {
    size_t steps = 0;
    const size_t budget = kStepsPerText + kStepsPerChar * text.size();
    return run(0, text.data(), 0, 0, text.size(), steps, budget, true) != kNone;
}

}  // namespace saliq
