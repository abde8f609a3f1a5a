"""The core every route shares: reading a saved QKeras model (model_io), fixed-point types
(fixed_point), the layer-kind registries and QKeras semantics (layer_kinds), the precision
plan and the float32 exactness check (plan), the reference outputs (reference), the project
record (project), the result record (results), atomic files (files), templates (templates)
and progress display (progress)."""
