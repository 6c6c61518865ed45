"""Model families. Each builder turns a small frozen config into an ``nn.Module``."""
