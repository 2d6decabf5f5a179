"""Training recipes: the toy CLIP and LLaVA curriculum, the toy LM's pre-training, NegCLIP, DINO, PACL / SPARC heads,
the LLM text tower and VLM2Vec's conversion. Imports the layers below."""
