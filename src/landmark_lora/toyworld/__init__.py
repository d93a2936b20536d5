"""The toy world and the toy-world base model (see world.py, tokenizer.py, build.py)."""
