"""PyTorch implementations of porthub's model families (one module per family, twin of ``paddle_models``)."""
