"""Training: one loop for CPU, GPU and torchrun (`loop.py`), and the trainable models' entry points (`commands.py`)."""
