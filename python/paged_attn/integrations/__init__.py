"""PagedAttn in other libraries' generation loops.

    from paged_attn.integrations import transformers as pa_transformers
    name = pa_transformers.register()      # "paged|paged_attn"
    model.set_attn_implementation(name)
    model.generate_batch(prompts, generation_config)

Each integration imports its library (and torch) only when used: importing
this package needs neither.
"""
