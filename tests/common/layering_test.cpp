// Includes point down the layers (../shared/docs/architecture.md): common, then io / ops, then data, model, quant and
// eval, then export, then the CLI. The layer of a public header is the folder of its implementation. A new include
// that points up or sideways fails here, in the suite every build runs; the few that are there today are listed with
// their reason and must stay the only ones.
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "saliq/file.h"

namespace saliq {
namespace {

const std::map<std::string, int> kRank = {{"common", 1}, {"io", 2},    {"ops", 2},    {"data", 3}, {"model", 4},
                                          {"quant", 5},  {"eval", 5},  {"export", 6}, {"tools", 7}};

// Headers without an implementation file of their own name.
const std::map<std::string, std::string> kHeaderLayer = {
    {"checkpoint", "io"}, {"llama_config", "io"}, {"progress", "common"}, {"model", "model"},
    {"quantize", "quant"}, {"method_traits", "quant"}, {"export", "export"}};

// Known exceptions: "file -> included header", each with its reason. None today: the libraries of the layers link
// only downward (CMakeLists.txt), so an exception would also need a link edge that points up.
const std::set<std::string> kAllowed = {};

std::string source_dir() { return SALIQ_SOURCE_DIR; }

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}
bool is_source(const std::string& name) { return ends_with(name, ".cpp") || ends_with(name, ".h") || ends_with(name, ".cu"); }

std::string read_all(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// The layer of a public header: its row above, else the folder of src/<layer>/<name>.cpp.
std::string header_layer(const std::string& name) {
    if (auto it = kHeaderLayer.find(name); it != kHeaderLayer.end()) return it->second;
    for (const auto& [layer, rank] : kRank) {
        (void)rank;
        if (path_exists(source_dir() + "/src/" + layer + "/" + name + ".cpp")) return layer;
    }
    return "";
}

TEST(Build, IncludesPointDownTheLayers) {
    std::vector<std::pair<std::string, std::string>> files;  // path relative to the source dir, its layer
    for (const auto& [layer, rank] : kRank) {
        (void)rank;
        const std::string dir = layer == "tools" ? "tools" : "src/" + layer;
        if (!is_directory(source_dir() + "/" + dir)) continue;
        for (const auto& name : list_directory(source_dir() + "/" + dir)) {
            if (is_directory(source_dir() + "/" + dir + "/" + name)) {  // methods/, tasks/: the same layer
                for (const auto& inner : list_directory(source_dir() + "/" + dir + "/" + name))
                    if (is_source(inner)) files.emplace_back(dir + "/" + name + "/" + inner, layer);
            } else if (is_source(name)) {
                files.emplace_back(dir + "/" + name, layer);
            }
        }
    }
    for (const auto& name : list_directory(source_dir() + "/include/saliq")) {
        const std::string stem = name.substr(0, name.rfind('.'));
        const std::string layer = header_layer(stem);
        ASSERT_FALSE(layer.empty()) << "include/saliq/" << name << " has no layer: give it a row in kHeaderLayer";
        files.emplace_back("include/saliq/" + name, layer);
    }
    ASSERT_GT(files.size(), 100u);
    const std::regex include_re(R"re(#include "([^"]+)")re");
    std::vector<std::string> violations;
    std::set<std::string> seen_allowed;
    for (const auto& [path, layer] : files) {
        const std::string text = read_all(source_dir() + "/" + path);
        for (std::sregex_iterator it(text.begin(), text.end(), include_re), end; it != end; ++it) {
            const std::string inc = (*it)[1];
            std::string target;
            if (inc.rfind("saliq/", 0) == 0) {
                target = header_layer(inc.substr(6, inc.rfind('.') - 6));
            } else if (const auto slash = inc.find('/'); slash != std::string::npos && kRank.count(inc.substr(0, slash))) {
                target = inc.substr(0, slash);  // "quant/method.h": a layer's private header
            } else {
                continue;  // a file of the same folder
            }
            if (target.empty()) continue;
            const int from = kRank.at(layer), to = kRank.at(target);
            const bool up = to > from, sideways = to == from && target != layer;
            if (!up && !sideways) continue;
            const std::string edge = path + " -> " + inc;
            if (kAllowed.count(edge)) {
                seen_allowed.insert(edge);
                continue;
            }
            violations.push_back(edge + " (" + layer + " -> " + target + ")");
        }
    }
    for (const auto& v : violations) ADD_FAILURE() << "include points " << v;
    for (const auto& a : kAllowed)
        EXPECT_TRUE(seen_allowed.count(a)) << a << " is gone: remove it from kAllowed";
}

}  // namespace
}  // namespace saliq
