"""Prompt formats for VQAScore: the LLaVA-1.5 conversation of t2v_metrics and the toy variant."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
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

    def answer_text(self, eos_token: str) -> str:
        """The scored answer: ``answer`` then the tokenizer's end-of-sequence token (``Yes</s>``)."""
        return self.answer + eos_token

    def save(self, folder: Path) -> None:
        """Write the format beside a model's weights."""
        (Path(folder) / PROMPT_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> PromptFormat:
        """The format saved with a model, or LLaVA-1.5's when the folder has none."""
        path = Path(folder) / PROMPT_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()


TOY_FORMAT = PromptFormat(system="", pad_to_square=False)


@dataclass(frozen=True)
class ChatFormat(PromptFormat):
    """A chat template other than LLaVA-1.5's: ``system``, ``turn`` around each user message, answers end in ``end``."""

    system: str = ""
    turn: str = "USER: {} ASSISTANT: "
    end: str = "</s>"

    def prompt(self, question: str) -> str:
        """``system`` then the first user turn, which holds the image."""
        return self.system + self.followup(f"<image>\n{question}")

    def followup(self, question: str) -> str:
        """A later user turn of the same conversation."""
        return self.turn.format(question)

    def answer_text(self, eos_token: str) -> str:
        """``answer`` then the template's end-of-turn token (``eos_token`` is not used)."""
        return self.answer + self.end


PHI3_FORMAT = ChatFormat(turn="<|user|>\n{}<|end|>\n<|assistant|>\n", end="<|end|>")
"""Phi-3 chat as in xtuner/llava-phi-3-mini-hf's model card (no system turn); answer ``Yes<|end|>``."""
LLAMA3_FORMAT = ChatFormat(
    turn="<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    end="<|eot_id|>",
)
"""Llama-3 chat as in xtuner/llava-llama-3-8b-v1_1-transformers' model card; answer ``Yes<|eot_id|>``."""
PHI3_PAPER_FORMAT = replace(
    PHI3_FORMAT, system="<|system|>\nYou are a helpful AI assistant.<|end|>", turn="\n" + PHI3_FORMAT.turn
)
"""The paper's t2v_metrics ``phi3_instruct`` conversation (LLaVA++ Phi-3-V)."""
LLAMA3_PAPER_FORMAT = replace(
    LLAMA3_FORMAT,
    system=f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{LLAVA_SYSTEM}<|eot_id|>",
)
"""The paper's t2v_metrics ``llama3`` conversation (LLaVA++ LLaMA-3-V)."""
