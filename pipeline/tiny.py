"""The embedded default policy, built offline: a word-level tokenizer trained with `tokenizers`, a small
Llama-style model from a config, and a short self-supervised warm start. Saved with save_pretrained, so
every later stage loads it exactly like a hub model."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pipeline.config import TinyParams
from pipeline.warmstart import Example

SPECIALS = ["<pad>", "<unk>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def build_tokenizer(texts: list[str], max_length: int = 2048):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1)
    core.train_from_iterator(texts, trainer=trainer)
    core.add_tokens(["<prompt>", "</prompt>"])  # whole tokens, so a reflection's tags decode verbatim
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|end|>",
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(tok, p: TinyParams, seed: int, max_positions: int = 2048):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def encode_example(tok, ex: Example) -> tuple[list[int], list[int]]:
    """Prompt ids (chat template, generation prompt) and answer ids ending with the stop token."""
    text = tok.apply_chat_template(ex.messages, add_generation_prompt=True, tokenize=False)
    prompt = tok.encode(text, add_special_tokens=False)
    answer = tok.encode(ex.answer, add_special_tokens=False) + [tok.eos_token_id]
    return prompt, answer


def answer_loss(model, batch: list[tuple[list[int], list[int]]], pad_id: int, device="cpu") -> torch.Tensor:
    """Mean cross-entropy on the answer tokens of (prompt ids, answer ids) pairs, right-padded: the warm start's
    loss, and the replay's during RL updates."""
    width = max(len(a) + len(b) for a, b in batch)
    ids = torch.full((len(batch), width), pad_id, device=device)
    labels = torch.full((len(batch), width), -100, device=device)
    for r, (a, b) in enumerate(batch):
        ids[r, : len(a) + len(b)] = torch.tensor(a + b, device=device)
        labels[r, len(a) : len(a) + len(b)] = torch.tensor(b, device=device)
    return model(input_ids=ids, labels=labels).loss  # right padding: causal attention never sees the pads


def warm_start(model, tok, examples: list[Example], p: TinyParams, seed: int) -> list[dict]:
    """Teacher-forced training on the answer tokens only. Returns one log row per step."""
    if p.warmstart_steps == 0 or not examples:
        return []
    encoded = [encode_example(tok, ex) for ex in examples]
    rng = random.Random(f"{seed}:warmstart-order")
    opt = torch.optim.AdamW(model.parameters(), lr=p.warmstart_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / p.warmstart_steps))
    model.train()
    log = []
    for step in tqdm(range(p.warmstart_steps), desc="warm start", file=sys.stderr, disable=None):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(p.warmstart_batch_size)]
        loss = answer_loss(model, batch, tok.pad_token_id)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        log.append({"step": step, "loss": loss.item()})
    model.eval()
    return log


def save_policy(model, tok, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
