"""Greedy generation (steered or not), perplexity and reference vectors on one in-memory model."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .models import decoder_layers
from .steering import Positions, Steer, fusion_hooks

PERPLEXITY_BATCH = 8  # windows per scoring pass: logits are [batch, window, vocab] floats
# Finished rows leave the batch once the live rows are at most this share of it (docs/benchmarks.md measures
# the copy against the positions saved); 0 never compacts.
COMPACT_BELOW = 0.75


def token_picker(sampling: Sequence[tuple[float, int] | None],
                 device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    """(last-position logits [live, vocab], the caller's row of each [live]) -> next tokens [live]: argmax,
    except for the rows given a (temperature, seed), which sample from softmax(logits / temperature) with a
    generator of their own, so a row's tokens depend on its seed alone, not on the rows beside it or on which
    finished rows have left the batch."""
    generators = [None if s is None else (s[0], torch.Generator(device).manual_seed(s[1])) for s in sampling]

    def pick(logits: Tensor, rows: Tensor) -> Tensor:
        tokens = logits.argmax(-1)
        if not any(generators):
            return tokens
        for position, row in enumerate(rows.tolist()):
            if generators[row] is not None:
                temperature, generator = generators[row]
                probs = torch.softmax(logits[position].float() / temperature, dim=-1)
                tokens[position] = torch.multinomial(probs, 1, generator=generator)[0]
        return tokens
    return pick


class Engine:
    """One model and its tokenizer, generating greedily (or sampling, rows that ask) with per-row steering.

    Steered generation is faithful by default (the paper's loop: KV cache off, the whole sequence recomputed
    and re-steered at every step) or cached (KV cache on, running mean; see steering.py). Unsteered
    generation always uses the KV cache, which changes nothing without hooks.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.device = next(model.parameters()).device
        eos = model.generation_config.eos_token_id
        eos = tokenizer.eos_token_id if eos is None else eos
        self.eos = torch.tensor(eos if isinstance(eos, list) else [eos], device=self.device)
        # transformers renamed `past_key_values` to `cache` (5.2x); accept both spellings.
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.compact_below = COMPACT_BELOW
        # Token positions the generation passes computed, and those of rows not yet finished (the bench's share).
        self.positions_computed = self.positions_real = 0

    @property
    def layers(self) -> nn.ModuleList:
        """The decoder layers; a model used only to score perplexity (e.g. GPT-2) need not have them."""
        return decoder_layers(self.model)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def encode(self, texts: list[str], templated: bool) -> tuple[Tensor, Tensor]:
        # A rendered chat template already carries its special tokens.
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not templated)
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    @torch.no_grad()
    def generate(self, texts: list[str], max_new_tokens: int, templated: bool = False,
                 steer: Steer | None = None, stop_at_eos: bool = True, use_cache: bool | None = None,
                 sampling: Sequence[tuple[float, int] | None] | None = None) -> list[str]:
        """Greedy continuations of `texts` (left-padded into one batch), one row per text; `sampling` gives
        rows a (temperature, seed) to sample with instead (token_picker). `use_cache`: None follows the
        steering mode (on unsteered); False recomputes the whole sequence at every step, as faithful steering
        does (the bench's unsteered baseline for it)."""
        ids, mask = self.encode(texts, templated)
        if use_cache is None:
            use_cache = steer is None or steer.cached
        elif steer is not None and use_cache != steer.cached:
            raise ValueError(f"use_cache={use_cache} contradicts the steering mode (cached={steer.cached})")
        pick = token_picker(sampling or [None] * len(texts), self.device)
        if steer is None:
            new = self._greedy(ids, mask, max_new_tokens, None, use_cache, stop_at_eos, pick=pick)
        else:
            with fusion_hooks(self.layers, steer) as positions:
                new = self._greedy(ids, mask, max_new_tokens, positions, use_cache, stop_at_eos,
                                   steer.exclude_sink, pick)
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _greedy(self, ids: Tensor, mask: Tensor, max_new_tokens: int, positions: Positions | None,
                use_cache: bool, stop_at_eos: bool, exclude_sink: bool = False,
                pick: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
        """ids, mask: [batch, prompt] -> new tokens [batch, <= max_new_tokens] (pads after a row's EOS).

        Rows that have reached EOS leave the batch (its KV cache and every per-row tensor compacted) once
        the live rows fall to COMPACT_BELOW of it; `rows` maps the batch's rows to the caller's."""
        batch = ids.shape[0]
        pick = pick or token_picker([None] * batch, self.device)  # greedy
        pad = self.tokenizer.pad_token_id
        new = torch.full((batch, max_new_tokens), pad, dtype=torch.long, device=self.device)
        rows = torch.arange(batch, device=self.device)
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        live = batch  # rows not finished before this step
        past = None
        steps = 0
        for steps in range(1, max_new_tokens + 1):
            decoding = past is not None
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            if positions is not None:
                positions.update(mask, decoding, exclude_sink)
            step_ids, step_positions = (ids[:, -1:], position_ids[:, -1:]) if decoding else (ids, position_ids)
            # Only the last position's logits are needed: skipping the rest saves the LM head on the prompt.
            out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=step_positions,
                             use_cache=use_cache, logits_to_keep=1, **{self._cache_arg: past})
            past = getattr(out, self._cache_arg) if use_cache else None
            token = torch.where(done, torch.full_like(done, pad, dtype=torch.long), pick(out.logits[:, -1], rows))
            new[rows, steps - 1] = token
            self.positions_computed += len(rows)
            self.positions_real += live
            ids = torch.cat([ids, token[:, None]], dim=1)
            mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
            if stop_at_eos:
                done |= torch.isin(token, self.eos)
                live = int((~done).sum())
                if live == 0:
                    break
                if live <= self.compact_below * len(rows):
                    keep = (~done).nonzero().squeeze(1)
                    ids, mask, done, rows = ids[keep], mask[keep], done[keep], rows[keep]
                    if past is not None:
                        past.batch_select_indices(keep)
                    if positions is not None:
                        positions.select(keep)
        return new[:, :steps]

    @torch.no_grad()
    def perplexity(self, texts: list[str], window: int) -> list[float]:
        """exp(mean loss over non-overlapping `window`-token windows), per text, as the paper scored it;
        inf for a text of fewer than two tokens. All windows of all texts are scored in padded batches."""
        windows, owners = [], []
        for index, text in enumerate(texts):
            ids = self.tokenizer(text).input_ids
            for start in range(0, len(ids), window):
                if len(ids[start:start + window]) > 1:
                    windows.append(ids[start:start + window])
                    owners.append(index)
        losses = [loss for i in range(0, len(windows), PERPLEXITY_BATCH)
                  for loss in self._window_losses(windows[i:i + PERPLEXITY_BATCH])]
        per_text: list[list[float]] = [[] for _ in texts]
        for owner, loss in zip(owners, losses):
            per_text[owner].append(loss)
        return [math.exp(sum(ls) / len(ls)) if ls else math.inf for ls in per_text]

    def _window_losses(self, windows: list[list[int]]) -> list[float]:
        """Mean next-token cross-entropy of each window, right-padded into one batch."""
        longest = max(len(w) for w in windows)
        ids = torch.full((len(windows), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, window in enumerate(windows):
            ids[row, :len(window)] = torch.tensor(window)
            mask[row, :len(window)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        target_mask = mask[:, 1:].float()
        return ((nll * target_mask).sum(-1) / target_mask.sum(-1)).tolist()

    @torch.no_grad()
    def span_means(self, text: str, start_char: int, templated: bool = False, exclude_sink: bool = False) -> Tensor:
        """Mean output of every decoder layer over the tokens at or after `start_char`: [layers, hidden] float32.
        `templated`: the text is a rendered chat template (it carries its special tokens); `exclude_sink`:
        the sequence's first token is left out, as steering.mean=exclude_sink leaves it out of the mean.

        One teacher-forced forward pass; all layers are captured in it.
        """
        enc = self.tokenizer(text, return_tensors="pt", return_offsets_mapping=True, add_special_tokens=not templated)
        offsets = enc.pop("offset_mapping")[0]
        selected = (offsets[:, 1] > start_char) & (offsets[:, 1] > offsets[:, 0])
        selected[0] &= not exclude_sink
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
