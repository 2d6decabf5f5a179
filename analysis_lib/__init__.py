"""analysis_lib: the helper library of the executable book on why LLaVA perceives more than CLIP."""

__version__ = "0.1.0"
