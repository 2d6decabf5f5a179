"""What models are tested on: the toy world (scenes, captions, tokenizer), its sets exported in the benchmarks'
upstream formats, and the loaders of the real benchmarks. Imports ``core`` and ``stats``."""
