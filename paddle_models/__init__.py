"""PaddlePaddle implementations of porthub's model families (one module per family, twin of ``torch_models``)."""
