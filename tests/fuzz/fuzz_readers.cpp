// libFuzzer harness for everything saliq reads from disk: safetensors files, llama2.c .bin files, Hugging Face
// config.json and shard indexes, the zero-shot task files, GGUF files, tokenizer.json and pre-tokenizer regexes. The first input byte picks the reader, the rest
// is the file (a SentencePiece model too, and the model.safetensors of a GPTQ-packed folder, run through a forward
// pass). A reader may reject its input only with saliq::Error (a message the CLI prints, exit 2 or 3);
// any other exception, a crash or a sanitizer report is a finding.
//   cmake -B build-fuzz -DSALIQ_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ && cmake --build build-fuzz --target fuzz_readers
//   build-fuzz/fuzz_readers -max_total_time=300 -max_len=4096
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <ATen/ATen.h>

#include "saliq/checkpoint.h"
#include "saliq/error.h"
#include "saliq/file.h"
#include "saliq/gguf.h"
#include "saliq/split_regex.h"
#include "saliq/unicode.h"
#include "saliq/log.h"
#include "saliq/model.h"
#include "saliq/safetensors.h"
#include "saliq/tokenizer.h"
#include "saliq/zeroshot.h"

namespace {

const std::string& work_dir() {
    static const std::string dir = [] {
        std::string d = saliq::temp_directory() + "/saliq-fuzz-" + std::to_string(::getpid());
        saliq::remove_tree(d);
        saliq::make_directories(d + "/folder");
        for (const char* task : {"piqa", "arc", "hellaswag", "winogrande", "boolq"})
            saliq::make_directories(d + "/tasks/" + task);
        return d;
    }();
    return dir;
}

void write(const std::string& path, const uint8_t* data, size_t size) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

const char kConfig[] = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 12,
  "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 1, "vocab_size": 16,
  "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "torch_dtype": "float32"})";

// A 1-block, hidden-8 model packed at W2 g8 (what `saliq quantize --method rtn` writes); its weights are fuzzed.
const char kPackedConfig[] = R"({"architectures": ["LlamaForCausalLM"], "head_dim": 4, "hidden_size": 8,
  "intermediate_size": 16, "max_position_embeddings": 64, "num_attention_heads": 2, "num_hidden_layers": 1,
  "num_key_value_heads": 1, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": true,
  "torch_dtype": "float32", "vocab_size": 512, "quantization_config": {"bits": 2, "checkpoint_format": "gptq_v2",
  "desc_act": false, "group_size": 8, "quant_method": "gptq", "sym": false}})";

void touch_all(const saliq::Checkpoint& checkpoint) {
    for (const auto& name : checkpoint.tensors->names()) (void)checkpoint.tensors->get(name).sum().item<double>();
}

void run(uint8_t which, const uint8_t* data, size_t size) {
    const std::string& dir = work_dir();
    const std::string folder = dir + "/folder";
    switch (which % 13) {
        case 0: {  // a safetensors file
            write(dir + "/t.safetensors", data, size);
            const auto reader = saliq::SafetensorsReader::open(dir + "/t.safetensors");
            for (const auto& e : reader->entries()) (void)reader->tensor(e.name).sum().item<double>();
            break;
        }
        case 1:  // a llama2.c checkpoint
            write(dir + "/m.bin", data, size);
            touch_all(saliq::read_llama2c(dir + "/m.bin"));
            break;
        case 2:  // a Hugging Face folder: config.json
            saliq::remove_tree(folder + "/model.safetensors.index.json");
            write(folder + "/config.json", data, size);
            touch_all(saliq::load_checkpoint(folder));
            break;
        case 3: {  // a sharded folder: the index
            write(folder + "/config.json", reinterpret_cast<const uint8_t*>(kConfig), sizeof(kConfig) - 1);
            write(folder + "/model.safetensors.index.json", data, size);
            touch_all(saliq::load_checkpoint(folder));
            break;
        }
        case 4:
            write(dir + "/tasks/piqa/valid.jsonl", data, size);
            write(dir + "/tasks/piqa/valid-labels.lst", reinterpret_cast<const uint8_t*>("0\n1\n"), 4);
            (void)saliq::load_task("piqa", dir);
            break;
        case 5:
            write(dir + "/tasks/arc/ARC-Easy_test.json", data, size);
            (void)saliq::load_task("arc_easy", dir);
            break;
        case 6:
            write(dir + "/tasks/hellaswag/hellaswag_val_full.txt", data, size);
            (void)saliq::load_task("hellaswag", dir);
            break;
        case 7:
            write(dir + "/tasks/boolq/dev.jsonl", data, size);
            (void)saliq::load_task("boolq", dir);
            break;
        case 8: {  // a GPTQ-packed folder's weights, loaded and run
            saliq::remove_tree(folder + "/model.safetensors.index.json");
            write(folder + "/config.json", reinterpret_cast<const uint8_t*>(kPackedConfig), sizeof(kPackedConfig) - 1);
            write(folder + "/model.safetensors", data, size);
            const auto model = saliq::LlamaModel::load(saliq::load_checkpoint(folder), saliq::ModelOptions{});
            (void)model->forward(at::arange(6, at::kLong).view({1, 6})).sum().item<double>();
            break;
        }
        case 10: {  // a GGUF file: metadata, tensors, and its BPE vocabulary when it has one
            write(dir + "/m.gguf", data, size);
            const auto reader = saliq::GgufReader::open(dir + "/m.gguf");
            for (const auto& t : reader->tensors()) (void)reader->tensor(t.name).sum().item<double>();
            const saliq::GgufValue* vocab = reader->find_value("tokenizer.ggml.model");
            if (vocab != nullptr && vocab->value.is_string() && vocab->value.get<std::string>() == "gpt2") {
                const auto tokenizer = saliq::Tokenizer::load(dir + "/m.gguf");
                (void)tokenizer->decode(tokenizer->encode("Once upon a time, 12 \xe2\x82\xac."));
            }
            break;
        }
        case 11: {  // a tokenizer.json (byte-level BPE)
            write(dir + "/tokenizer.json", data, size);
            const auto tokenizer = saliq::Tokenizer::load(dir + "/tokenizer.json");
            (void)tokenizer->decode(tokenizer->encode("Once upon a time, 12 \xe2\x82\xac <|endoftext|>."));
            break;
        }
        case 12: {  // a pre-tokenizer regex (first line) run on a text (the rest)
            const std::string all(reinterpret_cast<const char*>(data), size);
            const size_t cut = all.find('\n');
            const saliq::SplitRegex regex(all.substr(0, cut));
            const auto text = saliq::unicode::decode_utf8(cut == std::string::npos ? "" : all.substr(cut + 1));
            (void)regex.find_all(text.cps, 0, text.cps.size());
            break;
        }
        default: {  // a tokenizer model
            write(dir + "/tok.model", data, size);
            const auto tokenizer = saliq::Tokenizer::load(dir + "/tok.model");
            (void)tokenizer->decode(tokenizer->encode("Once upon a time, 12 \xe2\x82\xac."));
            break;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    static const bool quiet = [] {
        saliq::set_log_level(saliq::LogLevel::Error);
        return true;
    }();
    (void)quiet;
    try {
        run(data[0], data + 1, size - 1);
    } catch (const saliq::Error&) {
        // a clear, typed rejection: what we want
    } catch (const std::exception& e) {
        std::fprintf(stderr, "untyped exception escaped a reader: %s\n", e.what());
        std::abort();
    }
    return 0;
}
