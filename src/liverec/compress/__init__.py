"""Smaller and faster variants of a trained model, each a loadable run directory.

quantize (int8 linear layers and item table, bf16/fp16), prune (magnitude and structured),
distill (a smaller student), export (ONNX Runtime), variants (build and write them),
loader (rebuild any variant from its run directory), report (the side-by-side comparison).
"""
