"""Prompt formats for VQAScore: the LLaVA-1.5 conversation of t2v_metrics and the toy variant."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

LLAVA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions."
)
QUESTION_TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'
PROMPT_FILE = "prompt_format.json"


@dataclass(frozen=True)
class PromptFormat:
    """How a question becomes a prompt and which answer is scored."""

    system: str = LLAVA_SYSTEM
    question_template: str = QUESTION_TEMPLATE
    answer: str = "Yes"
    pad_to_square: bool = True

    def prompt(self, question: str) -> str:
        """``{SYSTEM} USER: <image>\\n{question} ASSISTANT: `` (no leading space without a system)."""
        head = f"{self.system} " if self.system else ""
        return f"{head}USER: <image>\n{question} ASSISTANT: "

    def followup(self, question: str) -> str:
        """A later user turn of the same conversation (the image is only in the first)."""
        return f"USER: {question} ASSISTANT: "

    def vqa_prompt(self, caption: str) -> str:
        """The prompt asking whether the image shows ``caption``."""
        return self.prompt(self.question_template.format(caption))

    def save(self, folder: Path) -> None:
        """Write the format beside a model's weights."""
        (Path(folder) / PROMPT_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> PromptFormat:
        """The format saved with a model, or LLaVA-1.5's when the folder has none."""
        path = Path(folder) / PROMPT_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()


TOY_FORMAT = PromptFormat(system="", pad_to_square=False)
