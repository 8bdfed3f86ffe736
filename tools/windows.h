// `saliq windows`: the calibration windows `quantize` draws for the same options, as token ids in a JSON file, so a
// peer quantizer (scripts/bench_peers.sh) calibrates on exactly saliq's windows.
#pragma once

#include <string>

#include "saliq/calibration.h"

namespace saliq {

struct WindowsArgs {
    std::string tokenizer;  // tokenizer file, GGUF or model folder
    CalibOptions calib;
    std::string range = "0:1";
    std::string out;
};

int run_windows(WindowsArgs& args);

}  // namespace saliq
