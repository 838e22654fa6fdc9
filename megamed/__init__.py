"""megamed: Megatron-style pretraining for a multimodal medical language model."""
__version__ = "0.1.0"
