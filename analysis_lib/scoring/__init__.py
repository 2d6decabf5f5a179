"""Reading models: the scorers (CLIP cosine, VQAScore), probes, captum attribution, benchmark evaluation and the
score cache. Imports ``core``, ``stats``, ``data`` and ``models``."""
