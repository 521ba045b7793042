"""The embedded default policy, built offline: a word-level tokenizer trained with `tokenizers` on the game's own
text, a small Llama-style model from a config, and a self-supervised warm start on the curriculum of
warmstart.py (it stands in for pretraining and never shows a solution)."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch

from pipeline.config import Params, TinyParams
from pipeline.progress import Progress
from pipeline.sft import answer_loss
from pipeline.tiny.warmstart import Example, encode_example

log = logging.getLogger("erl")

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


def warm_start(model, tok, examples: list[Example], p: TinyParams, seed: int) -> list[dict]:
    """Teacher-forced training on the answer tokens only. Returns one log row per step."""
    if p.warmstart_steps == 0 or not examples:
        return []
    encoded = [encode_example(tok, ex) for ex in examples]
    rng = random.Random(f"{seed}:warmstart-order")
    opt = torch.optim.AdamW(model.parameters(), lr=p.warmstart_lr, weight_decay=p.warmstart_weight_decay)
    warm, final, steps = p.warmstart_warmup, p.warmstart_lr_final, p.warmstart_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(final, 1 - s / steps))
    model.train()
    log = []
    bar = Progress(steps, "warm start")
    for step in range(steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(p.warmstart_batch_size)]
        loss = answer_loss(model, batch, tok.pad_token_id)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), p.warmstart_grad_clip)
        opt.step()
        sched.step()
        log.append({"step": step, "loss": loss.item()})
        bar.update(1, loss=f"{log[-1]['loss']:.3f}")
    bar.close()
    model.eval()
    return log


def build(p: Params, env, train_tasks, out: Path) -> dict:
    """Build the tiny policy for ``env`` and save it at ``out``: tokenizer, model, warm start on exercises drawn
    from ``train_tasks``. Returns what init.json records (sizes, the warm-start loss curve, its seconds)."""
    from pipeline import checkpoint
    from pipeline.prompts import prompt_set
    from pipeline.tiny import warmstart

    prompts = prompt_set(p.policy.prompts, p.env.name)
    tp = p.policy.tiny
    kinds = tuple(tp.warmstart_exercises)
    tok = build_tokenizer(warmstart.corpus_texts(env, prompts, train_tasks, p.seed, kinds=kinds))
    model = build_model(tok, tp, p.seed)
    n_params = sum(q.numel() for q in model.parameters())
    log.info("tiny policy: %d tokens in vocabulary, %.2f M parameters", len(tok), n_params / 1e6)
    n_reading = int(round(tp.warmstart_corpus * tp.warmstart_reading))
    examples = warmstart.format_examples(
        env, prompts, train_tasks, tp.warmstart_corpus - n_reading, p.seed, tp.warmstart_reflect, tp.warmstart_memory
    )
    examples += warmstart.reading_examples(env, train_tasks, n_reading, p.seed, kinds)
    t0 = time.perf_counter()
    curve = warm_start(model, tok, examples, tp, p.seed)
    checkpoint.save_policy(model, tok, out, max_shard_size=p.policy.max_shard_size)
    return {
        "model": "tiny",
        "vocab": len(tok),
        "parameters": n_params,
        "warmstart_seconds": time.perf_counter() - t0,
        "warmstart": curve,
    }
