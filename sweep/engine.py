"""Greedy generation (steered or not), perplexity and reference vectors on one model; the Ray replica actor."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import prompts
from .config import ModelConfig
from .models import Location, decoder_layers, load
from .scoring import scored_text
from .steering import Positions, Steer, fusion_hooks


def _row_spans(mask: Tensor) -> list[tuple[int, int]]:
    """[start, end) of each row's real tokens: left pads before, pads of finished rows after."""
    starts = (mask.cumsum(-1) == 0).sum(-1)
    return [(int(s), int(s + n)) for s, n in zip(starts, mask.sum(-1))]


class Engine:
    """One model and its tokenizer. Steered generation runs the paper's faithful loop: KV cache off,
    the whole sequence recomputed and re-steered at every step."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.layers = decoder_layers(model)
        self.device = next(model.parameters()).device
        eos = model.generation_config.eos_token_id
        eos = tokenizer.eos_token_id if eos is None else eos
        self.eos = torch.tensor(eos if isinstance(eos, list) else [eos], device=self.device)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def encode(self, texts: list[str], templated: bool) -> tuple[Tensor, Tensor]:
        # A rendered chat template already carries its special tokens.
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not templated)
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    @torch.no_grad()
    def generate(self, texts: list[str], max_new_tokens: int, templated: bool = False,
                 steer: Steer | None = None) -> list[str]:
        """Greedy continuations of `texts`. Unsteered runs use the KV cache; steered runs do not (faithful)."""
        ids, mask = self.encode(texts, templated)
        if steer is None:
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
            return self.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
        with fusion_hooks(self.layers, steer) as positions:
            new = self._faithful_loop(ids, mask, max_new_tokens, positions)
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _faithful_loop(self, ids: Tensor, mask: Tensor, max_new_tokens: int, positions: Positions) -> Tensor:
        """ids, mask: [batch, prompt] -> new tokens [batch, <= max_new_tokens] (pad after a row's EOS)."""
        prompt_len = ids.shape[1]
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=self.device)
        pad = self.tokenizer.pad_token_id
        for _ in range(max_new_tokens):
            positions.spans = _row_spans(mask)
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                                use_cache=False).logits[:, -1]
            token = torch.where(done, torch.full_like(done, pad, dtype=torch.long), logits.argmax(-1))
            ids = torch.cat([ids, token[:, None]], dim=1)
            mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
            done |= torch.isin(token, self.eos)
            if bool(done.all()):
                break
        return ids[:, prompt_len:]

    @torch.no_grad()
    def perplexity(self, texts: list[str], window: int) -> list[float]:
        """exp(mean loss over non-overlapping `window`-token windows), per text, as the paper scored it."""
        scores = []
        for text in texts:
            ids = self.tokenizer(text, return_tensors="pt").input_ids.to(self.device)
            losses = [self.model(input_ids=chunk, labels=chunk).loss.item()
                      for chunk in ids.split(window, dim=1) if chunk.shape[1] > 1]
            scores.append(math.exp(sum(losses) / len(losses)) if losses else float("nan"))
        return scores

    @torch.no_grad()
    def span_means(self, text: str, start_char: int) -> Tensor:
        """Mean output of every decoder layer over the tokens at or after `start_char`: [layers, hidden] float32.

        One teacher-forced forward pass; all layers are captured in it.
        """
        enc = self.tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0]
        selected = (offsets[:, 1] > start_char) & (offsets[:, 1] > offsets[:, 0])
        if not bool(selected.any()):
            raise ValueError(f"no token covers characters from {start_char} on in {text!r}")
        captured: list[Tensor] = []

        def capture(module, args, output) -> None:  # noqa: ANN001 - a forward hook
            hidden = output[0] if isinstance(output, tuple) else output
            captured.append(hidden[0, selected.to(hidden.device)].float().mean(dim=0).cpu())

        handles = [layer.register_forward_hook(capture) for layer in self.layers]
        try:
            self.model(**{k: v.to(self.device) for k, v in enc.items()}, use_cache=False)
        finally:
            for handle in handles:
                handle.remove()
        return torch.stack(captured)


@dataclass(frozen=True)
class SteerSettings:
    """What a replica needs to run a steered trial by prompt id alone."""

    run_root: str
    max_new_tokens: int
    chat_template: bool
    exclude_sink: bool
    include_prompt: bool
    perplexity_window: int


@dataclass(frozen=True)
class SteeredOutput:
    text: str  # the continuation
    scored_text: str  # what overlap and perplexity are computed on (continuation, or prompt + continuation)
    perplexity: float
    seconds: float


class Replica:
    """A Ray actor holding one model copy. Reference vectors and questions are loaded from the run
    directory once, on first use, so trials send only a prompt id and weights."""

    def __init__(self, model_cfg: ModelConfig, location: Location, threads: int,
                 scorer: tuple[ModelConfig, Location] | None = None) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        self.engine = Engine(*load(model_cfg, location))
        self.scorer = Engine(*load(*scorer)) if scorer else self.engine
        self._steer_settings: SteerSettings | None = None
        self._vectors: dict[str, Tensor] = {}
        self._questions: dict[int, str] = {}

    def num_layers(self) -> int:
        return self.engine.num_layers

    def generate(self, texts: list[str], max_new_tokens: int, chat_template: bool | None) -> list[str]:
        """Unsteered greedy continuations; chat_template=None uses the template where the tokenizer has one."""
        if chat_template is None:
            chat_template = self.engine.tokenizer.chat_template is not None
        rendered = [prompts.render(self.engine.tokenizer, t, chat_template) for t in texts]
        return self.engine.generate(rendered, max_new_tokens, templated=chat_template)

    def reference_vectors(self, items: list[tuple[str, int]]) -> list[Tensor]:
        """(reference text, character where the gold answer starts) -> [layers, hidden] per item."""
        return [self.engine.span_means(text, start) for text, start in items]

    def configure_steering(self, settings: SteerSettings) -> None:
        from safetensors.torch import load_file

        from .rundir import RunDir, read_rows
        run = RunDir(Path(settings.run_root))
        self._vectors = load_file(run.vectors)
        self._questions = {r["prompt_id"]: r["question"] for r in read_rows(run.table("references"))}
        self._steer_settings = settings

    def steer(self, prompt_id: int, alpha: list[float], gamma: list[float]) -> SteeredOutput:
        settings = self._steer_settings
        if settings is None:
            raise RuntimeError("configure_steering must be called before steer")
        started = time.perf_counter()
        question = prompts.steered(self._questions[prompt_id])
        prompt = prompts.render(self.engine.tokenizer, question, settings.chat_template)
        steer = Steer(vectors=self._vectors[str(prompt_id)][None],
                      alpha=torch.tensor([alpha], dtype=torch.float64),
                      gamma=torch.tensor([gamma], dtype=torch.float64),
                      exclude_sink=settings.exclude_sink)
        (text,) = self.engine.generate([prompt], settings.max_new_tokens, settings.chat_template, steer)
        scored = scored_text(question, text, settings.include_prompt)
        (ppl,) = self.scorer.perplexity([scored], settings.perplexity_window)
        return SteeredOutput(text, scored, ppl, time.perf_counter() - started)
