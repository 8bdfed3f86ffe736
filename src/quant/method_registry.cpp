// The methods there are and what each supports (method_traits.h): one row per method.
#include "saliq/method_traits.h"

#include "quant/method.h"
#include "saliq/error.h"

namespace saliq {
namespace {

std::vector<MethodTraits> builtin_methods() {
    std::vector<MethodTraits> rows;
    MethodTraits m;

    m = {};
    m.name = "rtn";
    m.summary = "round-to-nearest with min-max groups (no calibration)";
    m.make = make_rtn_method;
    m.needs_calibration = false;
    m.shards_windows = true;  // reads no windows but to measure errors
    m.supports_ggml_grid = true;
    m.fits_by_input_importance = true;  // then it reads windows
    rows.push_back(m);

    m = {};
    m.name = "gptq";
    m.summary = "GPTQ: Hessian-aware column-by-column rounding with error feedback";
    m.make = make_gptq_method;
    m.shards_windows = true;  // its Hessians are all-reduced
    m.orders_columns = true;
    m.groups_ordered_by_default = true;
    m.supports_ggml_grid = true;
    rows.push_back(m);

    m = {};
    m.name = "slim-llm";
    m.summary = "SliM-LLM: GPTQ with salience-driven group-wise mixed precision (b-1/b/b+1 bits, average b)";
    m.make = make_slim_llm_method;
    m.orders_columns = true;  // --group-order; --act-order is refused (its bit map is per natural group)
    m.allocates_bits = true;
    rows.push_back(m);

    m = {};
    m.name = "omniquant";
    m.summary = "OmniQuant LWC: learned weight clipping per block, no adapters";
    m.make = make_omniquant_method;
    m.needs_fp_chain = true;
    m.shards_windows = true;
    m.trains = true;
    m.learns_clipping = true;
    m.takes_bit_map = true;
    m.trains_binarizers = true;
    m.supports_ggml_grid = true;  // LWC on the sub-blocks, the type's own fit in the fake quantizer
    m.searches_clipping_init = true;
    rows.push_back(m);

    m = {};
    m.name = "slim-llm-plus";
    m.summary = "SliM-LLM+: OmniQuant's LWC on SliM-LLM's mixed-precision bit map";
    m.make = make_slim_llm_plus_method;
    m.needs_fp_chain = true;
    m.shards_windows = true;  // as omniquant; its bit allocation alone runs in one process (validation says so)
    m.trains = true;
    m.learns_clipping = true;
    m.allocates_bits = true;
    m.takes_bit_map = true;
    rows.push_back(m);

    m = {};
    m.name = "apiq-bw";
    m.summary = "ApiQ block-wise: learned clipping + LoRA matching each FP block's outputs";
    m.make = make_apiq_bw_method;
    m.needs_fp_chain = true;
    m.shards_windows = true;
    m.trains = true;
    m.trains_adapters = true;
    m.learns_clipping = true;
    m.takes_bit_map = true;
    m.trains_binarizers = true;
    m.supports_ggml_grid = true;  // LWC on the sub-blocks, the type's own fit in the fake quantizer
    m.searches_clipping_init = true;
    rows.push_back(m);

    m = {};
    m.name = "apiq-lw";
    m.summary = "ApiQ layer-wise: learned clipping + LoRA matching each FP layer's outputs";
    m.make = make_apiq_lw_method;
    m.needs_fp_chain = true;
    m.shards_windows = true;
    m.trains = true;
    m.trains_adapters = true;
    m.learns_clipping = true;
    m.trains_binarizers = true;
    m.supports_ggml_grid = true;  // LWC on the sub-blocks, the type's own fit in the fake quantizer
    rows.push_back(m);
    return rows;
}

std::vector<MethodTraits>& table() {
    static std::vector<MethodTraits> rows = builtin_methods();
    return rows;
}

std::string join_or(const std::vector<std::string>& names) {
    std::string out;
    for (size_t i = 0; i < names.size(); ++i)
        out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
    return out;
}

}  // namespace

const std::vector<MethodTraits>& method_table() { return table(); }

const MethodTraits& method_traits(const std::string& name) {
    std::vector<std::string> known;
    for (const auto& m : table()) {
        if (m.name == name) return m;
        known.push_back(m.name);
    }
    throw ConfigError("unknown method '" + name + "' (available: " + join_or(known) + ")");
}

void register_method(MethodTraits traits) {
    if (traits.name.empty() || !traits.make) throw ConfigError("a method needs a name and a factory");
    for (const auto& m : table())
        if (m.name == traits.name) throw ConfigError("method '" + traits.name + "' is already registered");
    table().push_back(std::move(traits));
}

std::string methods_where(bool MethodTraits::*trait) {
    std::vector<std::string> names;
    for (const auto& m : table())
        if (m.*trait) names.push_back(m.name);
    return join_or(names);
}

}  // namespace saliq
