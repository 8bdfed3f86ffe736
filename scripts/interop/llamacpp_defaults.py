"""Settings the llama_cpp.Llama class takes no argument for (fields of llama_model_params / llama_context_params):
set by wrapping the default-params functions it starts from. Call before constructing a Llama."""
import llama_cpp.llama_cpp as C


def override_defaults(model=None, context=None):
    """model / context: {field: value} set on every llama_model_params / llama_context_params Llama makes."""
    for getter, fields in (("llama_model_default_params", model), ("llama_context_default_params", context)):
        if not fields:
            continue
        original = getattr(C, getter)

        def patched(original=original, fields=fields):
            params = original()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        setattr(C, getter, patched)
