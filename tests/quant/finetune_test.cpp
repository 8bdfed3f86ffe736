// saliq finetune: the gradients of the block-wise recomputed backward match finite differences (scales, adapters,
// norms), a run lowers the KL and the held-out perplexity of the folder it writes, and an interrupted run resumed
// ends where an uninterrupted one does.
#include <functional>
#include <limits>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include "saliq/error.h"
#include "saliq/export.h"
#include "saliq/file.h"
#include "saliq/finetune.h"
#include "saliq/quantize.h"
#include "saliq/safetensors.h"
#include "saliq/tokenizer.h"
#include "model_fixture.h"
#include "quant/quant_fixture.h"
#include "test_utils.h"

namespace saliq {
namespace {

// An RTN folder of `ckpt`; with `rank` > 0, random PEFT adapters on every linear beside it.
std::string rtn_folder(const Checkpoint& ckpt, const test::TempDir& dir, const std::string& name, int64_t group,
                       int64_t rank, at::ScalarType adapter_dtype = at::kFloat) {
    auto tok = Tokenizer::load(test::stories_tokenizer());  // RTN reads no text
    QuantizeOptions o = test::rtn_w2g8();
    o.spec.group_size = group;
    const std::string out = dir.file(name);
    GptqFolderWriter writer(out, ckpt, o, false);
    writer.finish(quantize_model(ckpt, *tok, o, &writer), {});
    if (rank == 0) return out;
    NamedTensors adapters;
    const auto shapes = linear_shapes(ckpt.config);
    at::manual_seed(7);
    for (int64_t layer = 0; layer < ckpt.config.n_layers; ++layer)
        for (int i = 0; i < kNumLinears; ++i) {
            const std::string l = hf_names::linear_name(layer, i);
            adapters.emplace_back(hf_names::lora_key(l, 'A'), (0.1 * at::randn({rank, shapes[i][1]})).to(adapter_dtype));
            adapters.emplace_back(hf_names::lora_key(l, 'B'), (0.1 * at::randn({shapes[i][0], rank})).to(adapter_dtype));
        }
    write_safetensors(out + "/adapter_model.safetensors", adapters, {{"format", "pt"}});
    write_json_atomic(out + "/adapter_config.json",
                      {{"peft_type", "LORA"}, {"task_type", "CAUSAL_LM"}, {"r", rank}, {"lora_alpha", 2 * rank},
                       {"lora_dropout", 0.0},
                       {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}},
                       {"bias", "none"}});
    return out;
}

at::Tensor find_param(const Finetuner& f, const std::string& name) {
    for (const auto& [n, t] : f.parameters())
        if (n == name) return t;
    ADD_FAILURE() << "no parameter " << name;
    return at::Tensor();
}

TEST(Finetune, BlockwiseGradientsMatchFiniteDifferences) {
    const LlamaConfig c = test::tiny_config();
    const auto weights = test::random_weights(c, 5);
    const Checkpoint teacher = test::memory_checkpoint(c, weights);
    test::TempDir dir;
    const Checkpoint student = load_checkpoint(rtn_folder(teacher, dir, "q", 8, 2));
    ASSERT_TRUE(student.adapter != nullptr);
    FinetuneOptions o;
    o.model.dtype = "fp32";
    o.train_norms = true;
    Finetuner f(student, teacher, o);
    at::manual_seed(1);
    const at::Tensor ids = at::randint(0, c.vocab_size, {2, 12}, at::kLong);
    (void)f.loss(ids, true);
    const std::vector<std::pair<std::string, std::vector<int64_t>>> probes = {
        {"model.layers.0.self_attn.q_proj.log_scales", {1, 2}},
        {"model.layers.1.mlp.down_proj.log_scales", {3, 0}},
        {"model.layers.0.mlp.up_proj.lora_A", {1, 5}},
        {"model.layers.1.self_attn.v_proj.lora_B", {2, 0}},
        {"model.layers.0.input_layernorm.weight", {7}},
        {"model.layers.1.post_attention_layernorm.weight", {3}},
    };
    for (const auto& [name, at_index] : probes) {
        const at::Tensor p = find_param(f, name);
        ASSERT_TRUE(p.defined());
        at::Tensor entry = p;
        for (int64_t k : at_index) entry = entry.select(0, k);
        const double analytic = p.grad().defined() ? [&] {
            at::Tensor g = p.grad();
            for (int64_t k : at_index) g = g.select(0, k);
            return g.item<double>();
        }() : 0.0;
        const double eps = 1e-2, x0 = entry.item<double>();
        {
            c10::NoGradGuard no_grad;
            entry.fill_(x0 + eps);
        }
        const double up = f.loss(ids, false);
        {
            c10::NoGradGuard no_grad;
            entry.fill_(x0 - eps);
        }
        const double down = f.loss(ids, false);
        {
            c10::NoGradGuard no_grad;
            entry.fill_(x0);
        }
        const double numeric = (up - down) / (2 * eps);
        EXPECT_GT(std::abs(numeric), 1e-6) << name;  // a probe that moves the loss
        EXPECT_NEAR(analytic, numeric, 0.03 * std::abs(numeric) + 1e-6) << name;
    }
}

Checkpoint stories_teacher() {
    Checkpoint teacher = read_llama2c(test::stories_bin());
    teacher.tokenizer_path = test::stories_tokenizer();
    return teacher;
}

// stories260K at RTN W2 g32 against its FP model, 4 windows of 64 tokens.
FinetuneOptions stories_options(int64_t epochs) {
    FinetuneOptions o;
    o.calib.source = "tinystories";
    o.calib.range = TokenRange::parse("0:0.5");
    o.calib.nsamples = 4;
    o.calib.seqlen = 64;
    o.batch = 2;
    o.epochs = epochs;
    o.model.dtype = "fp32";
    return o;
}

TEST(Finetune, LowersTheKlAndTheHeldOutPerplexityOfTheFolderItWrites) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    test::TempDir dir;
    const Checkpoint teacher = stories_teacher();
    const Checkpoint student = load_checkpoint(rtn_folder(teacher, dir, "q", 32, 0));
    const double before = test::heldout_ppl(*LlamaModel::load(student, {}), *tok, 16);
    FinetuneOptions o = stories_options(4);
    o.scale_lr = 1e-2;
    Finetuner f(student, teacher, o);
    const FinetuneResult r = run_finetune(f, *tok, o, nullptr, nullptr);
    EXPECT_LT(r.kl_after, 0.9 * r.kl_before);
    EXPECT_EQ(r.steps, 8);
    FinetuneFolderWriter writer(dir.file("ft"), student, {{"run", 1}}, false, false);
    writer.finish(f, r, {});
    const Checkpoint tuned = load_checkpoint(dir.file("ft"));
    EXPECT_EQ(tuned.format, "gptq");
    const double after = test::heldout_ppl(*LlamaModel::load(tuned, {}), *tok, 16);
    EXPECT_LT(after, before);
    // The folder holds what was trained (scales rounded to fp16): it scores like the in-memory student.
    const double in_memory = test::heldout_ppl(f.student(), *tok, 16);
    EXPECT_NEAR(after, in_memory, 2e-3 * in_memory);
    EXPECT_TRUE(path_exists(dir.file("ft") + "/saliq_manifest.json"));
    EXPECT_FALSE(path_exists(dir.file("ft") + ".partial"));
}

// Adapters come out as they went in (fp16, quantize's default storage), trained: distillation does not widen the
// folder's bits per weight.
TEST(Finetune, WritesTheAdaptersInTheStudentsDtype) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    test::TempDir dir;
    const Checkpoint teacher = stories_teacher();
    const Checkpoint student = load_checkpoint(rtn_folder(teacher, dir, "q", 32, 4, at::kHalf));
    const FinetuneOptions o = stories_options(1);
    Finetuner f(student, teacher, o);
    const FinetuneResult r = run_finetune(f, *tok, o, nullptr, nullptr);
    FinetuneFolderWriter writer(dir.file("ft"), student, {{"run", 1}}, false, false);
    writer.finish(f, r, {});
    const auto before = SafetensorsReader::open(dir.file("q") + "/adapter_model.safetensors");
    const auto after = SafetensorsReader::open(dir.file("ft") + "/adapter_model.safetensors");
    ASSERT_EQ(after->entries().size(), before->entries().size());
    bool changed = false;
    for (const auto& e : before->entries()) {
        const at::Tensor t = after->tensor(e.name);
        EXPECT_EQ(t.scalar_type(), at::kHalf) << e.name;
        changed = changed || !at::equal(t, before->tensor(e.name));
    }
    EXPECT_TRUE(changed) << "the adapters were not trained";
    EXPECT_NO_THROW(LlamaModel::load(load_checkpoint(dir.file("ft")), {}));
}

// A finetune of stories260K (the RTN W2 g32 student, 2 epochs of 2 steps) cancelled in its second epoch's first step:
// the first epoch's state is on disk in dir/ft.partial, where the resume tests start.
class InterruptedFinetune : public ::testing::Test {
protected:
    void SetUp() override {
        FinetuneFolderWriter writer(dir.file("ft"), student, fingerprint, false, false);
        Finetuner f(student, teacher, o);
        auto stop = [](const ProgressEvent& e) { return e.done < 3; };
        EXPECT_THROW(run_finetune(f, *tok, o, &writer, stop), Cancelled);
    }

    std::shared_ptr<Tokenizer> tok = Tokenizer::load(test::stories_tokenizer());
    test::TempDir dir;
    const Checkpoint teacher = stories_teacher();
    const Checkpoint student = load_checkpoint(rtn_folder(teacher, dir, "q", 32, 0));
    const FinetuneOptions o = stories_options(2);
    const nlohmann::json fingerprint = {{"run", "resume"}};
};

TEST_F(InterruptedFinetune, ResumedItEndsWhereAnUninterruptedRunDoes) {
    Finetuner straight(student, teacher, o);
    const FinetuneResult full = run_finetune(straight, *tok, o, nullptr, nullptr);

    EXPECT_TRUE(path_exists(dir.file("ft") + ".partial/state.safetensors"));
    EXPECT_THROW(FinetuneFolderWriter(dir.file("ft"), student, fingerprint, false, false), ConfigError);
    EXPECT_THROW(FinetuneFolderWriter(dir.file("ft"), student, {{"run", "other"}}, false, true), ConfigError);
    {  // --resume --force continues a state of these settings (one of other settings is started over: below)
        FinetuneFolderWriter both(dir.file("ft"), student, fingerprint, true, true);
        EXPECT_TRUE(both.has_state());
    }
    FinetuneFolderWriter writer(dir.file("ft"), student, fingerprint, false, true);
    Finetuner resumed(student, teacher, o);
    const FinetuneResult r = run_finetune(resumed, *tok, o, &writer, nullptr);
    EXPECT_EQ(r.resumed_epochs, 1);
    EXPECT_EQ(full.resumed_epochs, 0);
    EXPECT_GT(r.seconds, 0.0);
    EXPECT_EQ(r.steps, full.steps);
    EXPECT_NEAR(r.kl_after, full.kl_after, 1e-6 * full.kl_after);
    const auto a = straight.parameters(), b = resumed.parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
        EXPECT_TRUE(at::allclose(a[i].second, b[i].second, 1e-6, 1e-7)) << a[i].first;
}

// A finetune store in memory: what the last finished epoch saved.
struct MemoryStore : FinetuneStore {
    NamedTensors state;
    nlohmann::json meta;
    bool has_state() const override { return !state.empty(); }
    NamedTensors load_state(nlohmann::json& m) const override {
        m = meta;
        return state;
    }
    void save_state(const NamedTensors& s, const nlohmann::json& m) override {
        state = s;
        meta = m;
    }
};

// What the first epoch of an interrupted run took is kept with its state and counted in the resumed run's time; and
// --resume --force starts over from a state of other settings instead of refusing it.
TEST_F(InterruptedFinetune, ItsTimeCountsInTheResumedRunAndForceStartsOverOtherSettings) {
    // The time an interrupted run records for its finished epochs is added to the resumed run's own.
    MemoryStore store;
    {
        FinetuneFolderWriter writer(dir.file("ft"), student, fingerprint, false, true);
        store.state = writer.load_state(store.meta);
    }
    ASSERT_TRUE(store.meta.contains("seconds"));
    EXPECT_GT(store.meta["seconds"].get<double>(), 0.0);
    store.meta["seconds"] = 1000.0;
    Finetuner f(student, teacher, o);
    const FinetuneResult r = run_finetune(f, *tok, o, &store, nullptr);
    EXPECT_EQ(r.resumed_epochs, 1);
    EXPECT_GT(r.seconds, 1000.0);
    EXPECT_LT(r.seconds, 1000.0 + 600.0);
    // Other settings with --resume alone: refused; with --force too: started over.
    EXPECT_THROW(FinetuneFolderWriter(dir.file("ft"), student, {{"run", "other"}}, false, true), ConfigError);
    FinetuneFolderWriter over(dir.file("ft"), student, {{"run", "other"}}, true, true);
    EXPECT_FALSE(over.has_state());
}

// A resumed state must be a point this run reaches: negative steps zeroed Adam's bias corrections (NaN weights),
// epochs past the run's skipped its training; non-finite tensors or a negative second moment poison every step.
TEST(Finetune, AResumeStateThisRunCannotHaveSavedIsRefused) {
    auto tok = Tokenizer::load(test::stories_tokenizer());
    test::TempDir dir;
    const Checkpoint teacher = stories_teacher();
    const Checkpoint student = load_checkpoint(rtn_folder(teacher, dir, "q", 32, 0));
    const FinetuneOptions o = stories_options(2);  // 2 epochs of 2 steps
    MemoryStore saved;
    {
        Finetuner f(student, teacher, o);
        auto stop = [](const ProgressEvent& e) { return e.done < 3; };  // cancelled after the first epoch
        EXPECT_THROW(run_finetune(f, *tok, o, &saved, stop), Cancelled);
    }
    ASSERT_EQ(saved.meta["epochs_done"], 1);
    auto message_for = [&](const std::function<void(MemoryStore&)>& edit) {
        MemoryStore store = saved;
        edit(store);
        Finetuner f(student, teacher, o);
        return test::error_of([&] { run_finetune(f, *tok, o, &store, nullptr); });
    };
    auto set_first = [](MemoryStore& s, const std::string& suffix, double value) {
        for (auto& [name, t] : s.state)
            if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
                t = t.clone();
                t.view(-1)[0] = value;
                return;
            }
    };
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<std::pair<std::function<void(MemoryStore&)>, std::string>> cases = {
        {[](MemoryStore& s) { s.meta["steps"] = -1; }, "steps -1, but 1 epochs of 2 steps make 2"},
        {[](MemoryStore& s) { s.meta["steps"] = 3; }, "steps 3, but"},
        {[](MemoryStore& s) { s.meta["steps"] = "2"; }, "'steps' is not an integer"},
        {[](MemoryStore& s) { s.meta["epochs_done"] = 3; }, "epochs_done 3 is not between 0 and the run's 2 epochs"},
        {[](MemoryStore& s) { s.meta["epochs_done"] = -1; }, "epochs_done -1 is not between"},
        {[](MemoryStore& s) { s.meta["epoch_kl"] = nlohmann::json::array(); }, "'epoch_kl' is not a list of 1"},
        {[&](MemoryStore& s) { s.meta["kl_before"] = nan; }, "'kl_before' is not a finite number"},
        {[&](MemoryStore& s) { s.meta["seconds"] = -5.0; }, "'seconds' is not a finite number of seconds"},
        {[&](MemoryStore& s) { set_first(s, ".adam_v", -1.0); }, ".adam_v' holds a negative or non-finite value"},
        {[&](MemoryStore& s) { set_first(s, ".adam_m", nan); }, ".adam_m' holds a non-finite value"},
        {[&](MemoryStore& s) { set_first(s, ".log_scales", nan); }, ".log_scales' holds a non-finite value"},
    };
    for (const auto& [edit, words] : cases) {
        const std::string message = message_for(edit);
        EXPECT_NE(message.find("finetune state"), std::string::npos) << message;
        EXPECT_NE(message.find(words), std::string::npos) << message;
    }
    EXPECT_EQ(message_for([](MemoryStore&) {}), "<no error>");
}

TEST(Finetune, RefusesWhatItCannotTrain) {
    const LlamaConfig c = test::tiny_config();
    const Checkpoint fp = test::memory_checkpoint(c, test::random_weights(c));
    test::TempDir dir;
    const Checkpoint student = load_checkpoint(rtn_folder(fp, dir, "q", 8, 0));
    FinetuneOptions o;
    EXPECT_THROW(Finetuner(fp, fp, o), ConfigError);            // the student is not quantized
    EXPECT_THROW(Finetuner(student, student, o), ConfigError);  // the teacher is
    LlamaConfig wider = c;
    wider.hidden_size = 48;
    wider.head_dim = 12;
    EXPECT_THROW(Finetuner(student, test::memory_checkpoint(wider, test::random_weights(wider)), o), ConfigError);
    o.train_scales = false;  // and no adapters in the folder
    EXPECT_THROW(Finetuner(student, fp, o), ConfigError);
    o.train_scales = true;
    o.epochs = 0;
    EXPECT_THROW(o.validate(), ConfigError);
}

}  // namespace
}  // namespace saliq
