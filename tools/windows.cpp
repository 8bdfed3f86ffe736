// `saliq windows`: see windows.h.
#include "windows.h"

#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/log.h"
#include "saliq/strings.h"
#include "saliq/tokenizer.h"
#include "cli.h"

namespace saliq {

Command add_windows_command(CLI::App& app) {
    auto args = std::make_shared<WindowsArgs>();
    WindowsArgs& a = *args;
    CLI::App* cmd = app.add_subcommand("windows", "the calibration windows quantize draws, as token ids (JSON), for "
                                                  "another tool to calibrate on the same windows");
    cmd->add_option("--tokenizer,-m,--model", a.tokenizer, "tokenizer.model, tokenizer.json, a GGUF or a model folder")
        ->required();
    cmd->add_option("--calib", a.calib.source, "wikitext2, c4, ptb, tinystories or a text file")->capture_default_str();
    cmd->add_option("--calib-range", a.range, "fraction of the text (c4: documents) to draw from")
        ->capture_default_str();
    cmd->add_option("--nsamples", a.calib.nsamples, "windows")->capture_default_str();
    cmd->add_option("--seqlen", a.calib.seqlen, "tokens per window (quantize's --seqlen)")
        ->capture_default_str();
    cmd->add_option("--seed", a.calib.seed, "seed of the window draw (quantize's --seed)")->capture_default_str();
    cmd->add_option("--out,-o", a.out, "JSON file to write")->required();
    return {cmd, [args] { return run_windows(*args); }};
}

int run_windows(WindowsArgs& a) {
    a.calib.range = TokenRange::parse(a.range);
    std::string path = a.tokenizer;
    if (is_directory(path)) path = load_checkpoint(path, "").tokenizer_path;
    if (path.empty()) throw ConfigError(a.tokenizer + " has no tokenizer.model or tokenizer.json");
    const auto tokenizer = Tokenizer::load(path);
    const CalibSet set = sample_calibration(a.calib, *tokenizer);
    nlohmann::json windows = nlohmann::json::array();
    for (int64_t w = 0; w < a.calib.nsamples; ++w) {
        const auto first = set.tokens.begin() + w * a.calib.seqlen;
        windows.push_back(std::vector<int32_t>(first, first + a.calib.seqlen));
    }
    nlohmann::json out = {{"source", a.calib.source},   {"range", a.calib.range.to_string()},
                          {"seed", a.calib.seed},       {"nsamples", a.calib.nsamples},
                          {"seqlen", a.calib.seqlen},   {"starts", set.starts},
                          {"windows", std::move(windows)}};
    if (!set.offsets.empty()) out["offsets"] = set.offsets;
    write_json_atomic(a.out, out);
    log_info(strprintf("%lld windows x %lld tokens from %s (range %s, seed %llu) -> %s", (long long)a.calib.nsamples,
                       (long long)a.calib.seqlen, a.calib.source.c_str(), a.calib.range.to_string().c_str(),
                       (unsigned long long)a.calib.seed, a.out.c_str()));
    return 0;
}

}  // namespace saliq
