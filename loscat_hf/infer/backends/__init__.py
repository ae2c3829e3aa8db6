"""Where a predictor's forward pass runs: everything backend-specific, behind `infer.load.load_predictor`.

`choice` (which backend a --backend/--precision/device asks for; torch-free), `runner` (the torch model's
runner: torch eager or ONNX Runtime), `onnx_export` (export, exactness check, int8, `OnnxRunner`),
`onnx_cache` (the exported graphs, torch-free) and `lean` (a cached graph run without torch). Only this
package imports ONNX Runtime.
"""
