"""The prompt texts of method.md §1-4, rendered with or without the model's chat template."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def baseline(question: str) -> str:
    """The paper's baseline prompt is the bare question."""
    return question


def enrichment(question: str, answer: str) -> str:
    return f"Question: {question}\nAnswer: {answer}"


def steered(question: str) -> str:
    return f"Question: {question}\nAnswer and explanation:"


def in_context(question: str, reference_text: str) -> str:
    """The `in_context` arm's prompt: the text a gold vector averages over (reference_answer), given as
    context before the steered prompt, so the arm shows what steering toward that text is up against."""
    return f"Context: {reference_text}\n\n{steered(question)}"


def reference_answer(answer: str, explanation: str) -> str:
    """What a gold reference vector averages over: the gold answer, then the model's explanation."""
    return f"{answer}\n{explanation}"


def split_explanation(continuation: str) -> tuple[str, str]:
    """(explanation, source): text after an 'Explanation:' marker, else the whole continuation, trimmed.

    The authors split on the literal '**Explanation:**' and got nothing for half their prompts; the source
    ('marker', 'continuation' or 'empty') is recorded per prompt so the choice can be audited.
    """
    lowered = continuation.lower()
    marker = lowered.find("explanation:")
    if marker >= 0:
        text = continuation[marker + len("explanation:"):].strip(" *\n\t")
        return text, "marker" if text else "empty"
    text = continuation.strip()
    return text, "continuation" if text else "empty"


def vector_span(tokenizer: PreTrainedTokenizerBase, question: str, answer: str | None,
                chat_template: bool) -> tuple[str, int]:
    """(text, start_char): the steered prompt exactly as steering renders it, then `answer` (as the model's turn
    with a chat template, on a new line without one). A reference vector averages every layer's output over
    the tokens from start_char on: the answer's tokens, or with answer=None the prompt's own tokens (the
    question-only vector; the caller leaves the attention sink out when steering does)."""
    prompt = render(tokenizer, steered(question), chat_template)
    if answer is None:
        return prompt, 0
    head = prompt if chat_template else f"{prompt}\n"
    return f"{head}{answer}", len(head)


def render(tokenizer: PreTrainedTokenizerBase, text: str, chat_template: bool) -> str:
    """The string the model sees; with a chat template the text becomes one user turn."""
    if not chat_template:
        return text
    if tokenizer.chat_template is None:
        raise ValueError("prompt.chat_template=true but this model's tokenizer has no chat template")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
