"""The models' parts: tiny models of the paper's real classes, image tokens and their positions, COMM's multi-level
merge, frozen features, prompt formats and how a toy LLaVA reads a conversation. Imports the layers above only."""
