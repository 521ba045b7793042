"""Peer benchmark: TRL's GRPOTrainer vs this project's RLVR update on the same tiny model, the same FrozenLake
prompts, group size G, prompts per round P, new-token limit N and number of rounds K.

One invocation builds a tiny Llama + word-level tokenizer with the project's own builders (pipeline.tiny.model),
gives it a short format warm start, saves it once (save_pretrained), then runs each side in its own fresh
subprocess (same thread count; the first round of each is a warm-up and is not counted) and prints a table:

    python peer_bench.py --P 4 --G 4 --N 8 --K 2                           # smoke test
    python peer_bench.py --P 16 --G 8 --N 16 --K 12 --beta 0 0.02 --repeats 3
    python peer_bench.py --P 8 --G 8 --N 8 --K 6 --minibatch 16 --ppo-epochs 2   # project-default-shaped update
    python peer_bench.py --P 4 --G 4 --N 8 --K 4 --turns 4                 # multi-turn (TRL environment_factory)

A round = P prompts x G rollouts generated in one batch, then updated on.
  erl : rollout.run_episodes (chat template, pipeline.engine.HFEngine.generate at temperature 1, env.step) ->
        reward -> pipeline.advantages.grpo -> pipeline.trainer.train_epoch (minibatch_size M, ppo_epochs E),
        in memory, as one process would run attempts.first_attempts + consolidate + update
  trl : trl.GRPOTrainer, use_vllm False, generation_batch_size P*G, per_device_train_batch_size M, GA 1,
        num_iterations E (multi-turn: environment_factory with one tool per action)
Default M = P*G and E = 1: one optimizer step per round, on-policy.

Columns: s/step = wall seconds per optimizer step; compl/s = completions (episodes) per second; gen = generation +
reward + advantages per round (TRL: its whole _generate_and_score_completions, which also holds its reference
forward when beta > 0); upd = the rest of the round; lp = erl's no-gradient log-prob passes inside train_epoch
(old log-probs, and the reference model's when beta > 0).

Runs under the benchmark's own venv (`bash scripts/setup_peer_bench.sh`: TRL never enters the project's .venv);
only the trl side imports trl; --erl-python runs the erl side under another python (e.g. .venv/bin/python).
Results and what makes the two sides comparable: reports/results.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the project


# ---- shared: tasks, prompts, reward ---------------------------------------------------------------------------


TURNS = 1  # episode length in turns (env budget); set from --turns


def make_env():
    from pipeline.envs.frozenlake import FrozenLake

    # the project's defaults (pad_to 5, row numbers, coords, near, relative); multi-turn: budget = --turns
    return FrozenLake() if TURNS == 1 else FrozenLake(budget=TURNS)


def system_prompt() -> str:
    from pipeline.prompts import prompt_set

    return prompt_set("tiny", "frozenlake").system  # s0


def task_specs(n: int, seed: int) -> list[dict]:
    env = make_env()
    return [t.spec for t in env.generate("train", n, seed)]


def messages_of(spec: dict) -> list[dict]:
    """One turn: s0 as the system message, the first board (env.message) as the user message."""
    env = make_env()
    state = env.reset(spec)
    return [{"role": "system", "content": system_prompt()}, {"role": "user", "content": env.message(state, None)}]


def reward_of(spec: dict, reply: str) -> float:
    """1 if the reply's parsed action is a move that stays on the board and does not step into a hole, else 0.
    The same function scores both sides (on the reply decoded with skip_special_tokens=True)."""
    from pipeline.envs.grid import MOVES, parse_action

    action = parse_action(reply)
    if action is None:
        return 0.0
    n = spec["size"]
    (r, c), (dr, dc) = spec["start"], MOVES[action]
    nr, nc = r + dr, c + dc
    if not (0 <= nr < n and 0 <= nc < n):
        return 0.0
    return 0.0 if spec["grid"][nr][nc] == "C" else 1.0


# ---- build the shared model once -------------------------------------------------------------------------------


def build_shared_model(out: Path, hidden: int, layers: int, heads: int, inter: int, warm_steps: int, seed: int):
    """Tokenizer (the project's build_tokenizer on FrozenLake text) + tiny Llama (build_model), optionally a short
    teacher-forced warm start on well-formed random replies (so completions end with <|end|> and rewards vary, as
    they do for the project's warm-started tiny policy), saved once with save_pretrained: both sides load it."""
    import torch

    from pipeline.config import TinyParams
    from pipeline.envs.grid import ACTIONS
    from pipeline.sft import answer_loss
    from pipeline.tiny.model import build_model, build_tokenizer

    env = make_env()
    specs = task_specs(300, seed + 1)
    texts = [system_prompt()]
    rng = random.Random(seed)
    for spec in specs:
        state = env.reset(spec)
        texts.append(env.message(state, None))
        for _ in range(3):
            reply = f"```{rng.choice(ACTIONS)}```"
            texts.append(reply)
            state, step = env.step(state, reply)
            texts.append(env.message(state, step))
            if state.done:
                break
    tok = build_tokenizer(texts)
    tp = TinyParams(hidden_size=hidden, layers=layers, heads=heads, intermediate_size=inter)
    model = build_model(tok, tp, seed)
    n_params = sum(p.numel() for p in model.parameters())
    losses = []
    if warm_steps > 0:
        pairs = []
        for spec in specs:
            text = tok.apply_chat_template(messages_of(spec), add_generation_prompt=True, tokenize=False)
            prompt = tok.encode(text, add_special_tokens=False)
            answer = tok.encode(f"```{rng.choice(ACTIONS)}```", add_special_tokens=False) + [tok.eos_token_id]
            pairs.append((prompt, answer))
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        model.train()
        for _ in range(warm_steps):
            batch = [pairs[rng.randrange(len(pairs))] for _ in range(16)]
            loss = answer_loss(model, batch, tok.pad_token_id)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"vocab": len(tok), "params": n_params, "warm_losses": [losses[0], losses[-1]] if losses else None}


# ---- project side ---------------------------------------------------------------------------------------------


def run_erl(a) -> dict:
    import torch
    from accelerate import Accelerator

    import pipeline.trainer as trainer_mod
    from pipeline.advantages import grpo
    from pipeline.config import Sampling, UpdateParams
    from pipeline.engine import HFEngine, load_causal_lm, stop_ids_of
    from pipeline.envs.base import Task
    from pipeline.rollout import Episode, run_episodes
    from pipeline.seeding import derive_seed
    from pipeline.trainer import train_epoch

    # time the no-gradient log-prob passes of train_epoch (old log-probs always; the reference model's if beta > 0)
    lp_time = [0.0]
    plain_segment_logprobs = trainer_mod.segment_logprobs

    def timed_segment_logprobs(*args, **kw):
        t = time.perf_counter()
        try:
            return plain_segment_logprobs(*args, **kw)
        finally:
            lp_time[0] += time.perf_counter() - t

    trainer_mod.segment_logprobs = timed_segment_logprobs

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    accelerator = Accelerator(cpu=True)
    model, tok = load_causal_lm(a.model, "float32", device="cpu")
    ref_model = None
    if a.beta > 0:
        ref_model, _ = load_causal_lm(a.model, "float32", device="cpu")
        for q in ref_model.parameters():
            q.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    pad = tok.pad_token_id
    engine = HFEngine(model, stop_ids_of(tok), pad, batch_size=a.P * a.G)
    sampling = Sampling(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=a.N)
    u = UpdateParams(
        lr=a.lr,
        weight_decay=a.weight_decay,
        grad_clip=1.0,
        minibatch_size=a.minibatch or a.P * a.G,
        ppo_epochs=a.ppo_epochs,
        kl_coef=a.beta,
        replay_coef=0.0,
        clip_low=0.2,
        clip_high=0.28,
        entropy_coef=0.0,
        gradient_checkpointing=False,
        logprob_chunk=0,
    )
    env = make_env()
    s0 = system_prompt()
    specs = task_specs(a.P * a.K, a.seed)
    steps, first_prompt = [], None
    for k in range(a.K):
        t0 = time.perf_counter()
        batch = list(range(k * a.P, (k + 1) * a.P))
        rows = [(i, g) for i in batch for g in range(a.G)]  # G rollouts of each prompt, grouped
        # as attempts.first_attempts does: one Episode per rollout under s0, played by rollout.run_episodes (which
        # chat-templates each turn's prompt, generates in one batch per turn, decodes and steps the env)
        episodes = [
            Episode(f"s{k}-{i}-{g}", Task(f"t{i}", "train", specs[i], 0), s0, derive_seed(a.seed, k, i, g))
            for i, g in rows
        ]
        run_episodes(engine, tok, env, episodes, sampling, a.history, 1024, TURNS, desc="bench")
        if TURNS == 1:
            rewards = [reward_of(specs[i], ep.responses[0]) for (i, _), ep in zip(rows, episodes)]
        else:
            rewards = [env.reward(ep.trace(TURNS)) for ep in episodes]  # 1 if the goal was reached
        advs = grpo([i for i, _ in rows], rewards)
        samples = [
            {
                "sample_id": ep.rollout_id,
                "kind": "first",
                "advantage": adv[3],
                "prompt_ids": ep.prompt_ids,  # one segment per turn: environment tokens are never trained on
                "response_ids": ep.response_ids,
            }
            for ep, adv in zip(episodes, advs)
        ]
        if a.skip_zero_adv:  # what consolidate does by default (consolidate.skip_zero_advantage)
            samples = [x for x in samples if x["advantage"] != 0.0]
        t1 = time.perf_counter()
        lp_time[0] = 0.0
        step_rows = []
        if samples:
            _, step_rows = train_epoch(
                accelerator, model, ref_model, optimizer, samples, u, pad, derive_seed(a.seed, k, "upd")
            )
        t2 = time.perf_counter()
        first_prompt = first_prompt or episodes[0].prompt_ids[0]
        steps.append(
            {
                "time": t2 - t0,
                "opt_steps": len(step_rows),
                "completions": len(episodes),
                "gen": t1 - t0,
                "upd": t2 - t1,
                "lp": lp_time[0],
                "reward": statistics.fmean(rewards),
                "len": statistics.fmean(sum(len(r) for r in ep.response_ids) for ep in episodes),
                "turns": statistics.fmean(len(ep.steps) for ep in episodes),
                "trained": len(samples),
            }
        )
    return {"steps": steps, "prompt_ids0": first_prompt}


# ---- TRL side -------------------------------------------------------------------------------------------------

# Multi-turn through TRL's environment_factory needs a chat template that renders tool calls and tool results and a
# response template that parses tool calls out of a reply. For the tiny model a tool call is the project's own reply
# format, ```left```, one no-argument tool per action; a tool result (the next board) is rendered as a user turn, so
# the conversation is token for token what the project's multi-turn prompt with history 0 shows. On conversations
# without tools it renders the same tokens as pipeline.tiny.model.CHAT_TEMPLATE (the tokenizer ignores whitespace).
TOOL_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' and m.get('tool_calls') %}<|assistant|> "
    "{% for tc in m['tool_calls'] %}``` {{ tc['function']['name'] }}"
    "{% if tc['function']['arguments'] is mapping %}{% for k, v in tc['function']['arguments'].items() %}"
    " {{ k }} {{ v }}{% endfor %}{% endif %} ``` {% endfor %}<|end|> "
    "{% elif m['role'] == 'tool' %}<|user|> {{ m['content'] }} <|end|> "
    "{% else %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
TOOL_RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|assistant|>",
    "fields": {
        "tool_calls": {
            # a block holding exactly one action name is a call of that action's tool (project: parse_action)
            "open_pattern": r"```\s*(?P<name>left|down|right|up)\s*(?=```)",
            "close_pattern": r"```\s*",
            "repeats": True,
            "content": "kv-lines",  # no arguments: {}
            "transform": {"type": "function", "function": {"name": "{name}", "arguments": "{content}"}},
        },
        "content": {"close_pattern": r"<\|end\|>\s*", "content": "text"},
    },
}


class FrozenLakeTools:
    """A FrozenLake episode for TRL's environment_factory: reset(task=...) starts it on the row's map (the board is
    already the prompt's user message), each action is a tool whose result is the next user message
    (env.message), exactly what the project's run_episodes shows. TRL cannot end a rollout from the environment:
    after the episode is over a call raises, which TRL feeds back as an error and keeps going."""

    def __init__(self):
        self.env = make_env()
        self.state, self.steps, self.calls = None, [], 0

    def reset(self, task=None, **kwargs):
        self.state, self.steps, self.calls = self.env.reset(json.loads(task)), [], 0
        return None

    def _move(self, action: str) -> str:
        self.calls += 1
        if self.state.done:
            raise ValueError("the episode is over")
        self.state, step = self.env.step(self.state, f"```{action}```")
        self.steps.append(step)
        return self.env.message(self.state, step)

    def left(self) -> str:
        """Move left.

        Returns:
            The board after the move.
        """
        return self._move("left")

    def down(self) -> str:
        """Move down.

        Returns:
            The board after the move.
        """
        return self._move("down")

    def right(self) -> str:
        """Move right.

        Returns:
            The board after the move.
        """
        return self._move("right")

    def up(self) -> str:
        """Move up.

        Returns:
            The board after the move.
        """
        return self._move("up")


def trl_max_completion_length(a, tok) -> int:
    """Single-turn: N. Multi-turn: TRL's budget covers the whole episode, the environment's tokens included: T
    replies of N tokens plus T-1 tool results (a board message and its turn markers)."""
    if TURNS == 1:
        return a.N
    env = make_env()
    spec = task_specs(1, a.seed)[0]
    msg = env.message(env.reset(spec), None)
    per_result = len(tok.encode(f"<|user|> {msg} <|end|> <|assistant|>", add_special_tokens=False)) + 4
    return TURNS * a.N + (TURNS - 1) * per_result


def run_trl(a) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(a.threads)
    M = a.minibatch or a.P * a.G
    if (a.P * a.G) % M:
        raise SystemExit("--minibatch must divide P*G")
    per_round = a.ppo_epochs * (a.P * a.G) // M  # optimizer steps per generation round
    specs = task_specs(a.P * a.K, a.seed)
    rows = [{"prompt": messages_of(s), "task": json.dumps(s)} for s in specs]
    ds = Dataset.from_list(rows)
    tok = AutoTokenizer.from_pretrained(a.model, padding_side="left", truncation_side="left")
    seen = []  # (mean reward, mean completion length, mean moves) per generation batch, recorded by the reward

    if TURNS == 1:

        def reward(prompts, completions, task, completion_ids, **kw):
            out = [reward_of(json.loads(t), c[0]["content"]) for t, c in zip(task, completions)]
            seen.append((statistics.fmean(out), statistics.fmean(len(x) for x in completion_ids), 1.0))
            return out

        extra = {}
    else:

        def reward(prompts, completions, completion_ids, environments, **kw):
            out = [1.0 if e.steps and e.steps[-1].event == "goal" else 0.0 for e in environments]
            if not seen:  # the log shows one whole multi-turn completion, as trained
                print("TRL multi-turn completion 0:", tok.decode(completion_ids[0]), file=sys.stderr, flush=True)
            seen.append(
                (
                    statistics.fmean(out),
                    statistics.fmean(len(x) for x in completion_ids),  # environment tokens included
                    statistics.fmean(e.calls for e in environments),
                )
            )
            return out

        tok.chat_template = TOOL_CHAT_TEMPLATE
        tok.response_template = TOOL_RESPONSE_TEMPLATE
        extra = {"environment_factory": FrozenLakeTools}

    class Timer(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_train_begin(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

    class TimedGRPO(GRPOTrainer):
        gen_times: list = []

        def _generate_and_score_completions(self, inputs):
            t = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            self.gen_times.append(time.perf_counter() - t)
            return out

    cfg = GRPOConfig(
        output_dir=str(Path(a.workdir) / "trl_out"),
        # sizes: one optimizer step = P prompts x G completions, generated in one batch, used once
        num_generations=a.G,
        per_device_train_batch_size=M,  # counts completions, not prompts
        gradient_accumulation_steps=1,
        generation_batch_size=a.P * a.G,  # one generation round of P prompts x G, split into S = P*G/M steps
        num_iterations=a.ppo_epochs,  # mu: passes over each generation round
        max_steps=a.K * per_round,
        num_train_epochs=1,
        max_completion_length=trl_max_completion_length(a, tok),
        max_tool_calling_iterations=TURNS if TURNS > 1 else None,  # at most T moves (and T+1 replies)
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        use_vllm=False,
        # loss: PPO clip [1-0.2, 1+0.28] like update.clip_low/clip_high; dr_grpo = token sum / (B*N), the project's
        # token sum / B up to the constant N; k3 KL like the project's, without the IS factor
        beta=a.beta,
        epsilon=0.2,
        epsilon_high=0.28,
        loss_type="dr_grpo",
        scale_rewards="group",
        use_bias_correction_kl=False,
        mask_truncated_completions=False,
        # optimizer: torch AdamW, constant lr, like the project's update within an epoch
        learning_rate=a.lr,
        weight_decay=a.weight_decay,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        # CPU, fp32, nothing else running
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        shuffle_dataset=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
        seed=a.seed,
    )
    timer = Timer()
    trainer = TimedGRPO(
        model=a.model,
        reward_funcs=reward,
        args=cfg,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[timer],
        **extra,
    )
    trainer.train()
    ends = timer.ends
    steps = []
    for k in range((len(ends) - 1) // per_round):  # one row per generation round
        took = ends[(k + 1) * per_round] - ends[k * per_round]
        gen = trainer.gen_times[k] if k < len(trainer.gen_times) else float("nan")
        r, n, moves = seen[k] if k < len(seen) else (float("nan"),) * 3
        steps.append(
            {
                "time": took,
                "opt_steps": per_round,
                "completions": a.P * a.G,
                "gen": gen,
                "upd": took - gen,
                "lp": float("nan"),
                "reward": r,
                "len": n,
                "turns": moves,
                "trained": a.P * a.G,
            }
        )
    # the prompt ids TRL tokenized, to check both sides feed the model the same tokens
    ids0 = tok.apply_chat_template(rows[0]["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
    return {
        "steps": steps,
        "prompt_ids0": list(ids0),
        "trl": trl.__version__,
        "max_completion_length": cfg.max_completion_length,
    }


# ---- driver ---------------------------------------------------------------------------------------------------


def summarize(res: dict, warmup: int = 1) -> dict:
    """Totals over the generation rounds after the first ``warmup`` ones."""
    s = res["steps"][warmup:] or res["steps"]
    mean = lambda k: statistics.fmean(x[k] for x in s)  # noqa: E731
    took = sum(x["time"] for x in s)
    return {
        "sec_per_step": took / max(1, sum(x["opt_steps"] for x in s)),
        "sec_per_round": took / len(s),
        "gen": mean("gen"),
        "upd": mean("upd"),
        "lp": mean("lp"),
        "completions_per_s": sum(x["completions"] for x in s) / took,
        "reward": mean("reward"),
        "len": mean("len"),
        "turns": mean("turns"),
        "opt_steps": mean("opt_steps"),
        "n_rounds": len(s),
    }


def child(a):
    import torch

    torch.set_num_threads(a.threads)
    a.beta = float(a.beta[0])  # the child runs one coefficient
    res = run_trl(a) if a.side == "trl" else run_erl(a)
    res["threads_at_end"] = torch.get_num_threads()
    Path(a.json_out).write_text(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--P", type=int, default=4, help="prompts per optimizer step")
    ap.add_argument("--G", type=int, default=4, help="group size (completions per prompt)")
    ap.add_argument("--N", type=int, default=8, help="max new tokens per completion")
    ap.add_argument(
        "--K", type=int, default=2, help="generation rounds of P prompts x G (the first one is warm-up, not counted)"
    )
    ap.add_argument(
        "--minibatch",
        type=int,
        default=0,
        help="completions per optimizer step (update.minibatch_size; TRL per_device_train_batch_size); "
        "0 = P*G, one optimizer step per round",
    )
    ap.add_argument(
        "--ppo-epochs", type=int, default=1, help="passes over each round (update.ppo_epochs; TRL num_iterations)"
    )
    ap.add_argument("--beta", type=float, nargs="+", default=[0.0], help="KL coefficients to run (0 = no ref model)")
    ap.add_argument("--turns", type=int, default=1, help="1 = single-turn; T > 1 = multi-turn episodes of T moves")
    ap.add_argument(
        "--history",
        type=int,
        default=1,
        help="erl multi-turn: turns in context (policy.history; 1 = the project's default, 0 = all, "
        "what TRL always does)",
    )
    ap.add_argument("--sides", default="erl,trl")
    ap.add_argument("--repeats", type=int, default=1, help="run each (side, beta) this many times, alternating")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--inter", type=int, default=256)
    ap.add_argument("--warm-steps", type=int, default=60, help="teacher-forced format warm start (0 = random init)")
    ap.add_argument(
        "--model-dir",
        default=None,
        help="benchmark this Hugging Face model directory instead of building the tiny model, e.g. SmolLM2-135M-"
        'Instruct as the project imports it: .venv/bin/python -c "from pathlib import Path; from '
        "pipeline.checkpoint import import_model; import_model('smollm2', Path('/tmp/smollm2'), 'float32', '2GB')\"",
    )
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--skip-zero-adv", action="store_true", help="erl: drop zero-advantage samples (as consolidate)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--erl-python",
        default=sys.executable,
        help="python that runs the erl side (e.g. .venv/bin/python: the project's own venv)",
    )
    ap.add_argument("--workdir", default="/tmp/erl-peer-bench")
    ap.add_argument("--json", default=None, help="also write the results here")
    # internal (child process)
    ap.add_argument("--side", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    global TURNS
    TURNS = a.turns
    if a.side:
        return child(a)
    if a.K < 2:
        ap.error("--K must be >= 2 (the first round is warm-up)")
    if a.minibatch and (a.P * a.G) % a.minibatch:
        ap.error("--minibatch must divide P*G")

    import torch

    torch.set_num_threads(a.threads)
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "model"
    t = time.perf_counter()
    if a.model_dir:  # a real model: its own tokenizer and chat template on both sides
        model_dir = Path(a.model_dir)
        print(f"model: {model_dir} (as given)", flush=True)
    else:
        info = build_shared_model(model_dir, a.hidden, a.layers, a.heads, a.inter, a.warm_steps, a.seed)
        print(
            f"model: {info['params'] / 1e6:.2f} M params, vocab {info['vocab']}, warm start loss "
            f"{info['warm_losses']} ({time.perf_counter() - t:.1f}s), saved at {model_dir}",
            flush=True,
        )
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {a.threads}, "
        f"P={a.P} G={a.G} N={a.N} K={a.K} rounds, minibatch={a.minibatch or a.P * a.G}, ppo_epochs={a.ppo_epochs}, "
        f"turns={a.turns} (first round = warm-up)",
        flush=True,
    )
    sides = [s.strip() for s in a.sides.split(",") if s.strip()]
    results = []
    for rep in range(a.repeats):
        order = sides if rep % 2 == 0 else sides[::-1]
        for beta in a.beta:
            for side in order:
                out = work / f"{side}-b{beta}-r{rep}.json"
                py = a.erl_python if side == "erl" else sys.executable
                cmd = [py, __file__, "--side", side, "--model", str(model_dir), "--json-out", str(out)]
                for k in ("P", "G", "N", "K", "threads", "seed", "lr", "turns", "history", "minibatch"):
                    cmd += [f"--{k}", str(getattr(a, k))]
                cmd += ["--ppo-epochs", str(a.ppo_epochs)]
                cmd += ["--weight-decay", str(a.weight_decay), "--beta", str(beta), "--workdir", str(work)]
                if a.skip_zero_adv:
                    cmd.append("--skip-zero-adv")
                t = time.perf_counter()
                env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                wall = time.perf_counter() - t
                (work / f"{side}-b{beta}-r{rep}.log").write_text(proc.stdout + proc.stderr)
                if proc.returncode != 0:
                    print(f"[{side} beta={beta}] FAILED rc={proc.returncode}\n{proc.stderr[-4000:]}", flush=True)
                    continue
                res = json.loads(out.read_text())
                row = {"side": side, "beta": beta, "rep": rep, "process_wall": wall, **summarize(res)}
                row["prompt_ids0"] = res["prompt_ids0"]
                row["threads_at_end"] = res.get("threads_at_end")
                row["per_step"] = res["steps"]
                if "trl" in res:
                    row["trl_version"] = res["trl"]
                    row["trl_max_completion_length"] = res["max_completion_length"]
                results.append(row)
                print(
                    f"[{side} beta={beta} rep={rep}] {row['sec_per_step']:.3f} s/optimizer step, "
                    f"{row['completions_per_s']:.1f} compl/s (process {wall:.1f}s)",
                    flush=True,
                )

    # same tokens in?
    ids = {r["side"]: r["prompt_ids0"] for r in results}
    if "erl" in ids and "trl" in ids:
        print(
            "first prompt tokenized identically on both sides:", ids["erl"] == ids["trl"], f"({len(ids['erl'])} tokens)"
        )
    print("torch threads at the end of each side:", sorted({(r["side"], r["threads_at_end"]) for r in results}))
    for r in results:
        if "trl_max_completion_length" in r:
            print(f"TRL max_completion_length = {r['trl_max_completion_length']}")
            break
    print(
        "len = tokens per completion (erl: generated tokens of all turns; trl: the completion sequence, "
        "environment tokens included when multi-turn); turns = erl: turns played, trl: tool calls made"
    )

    hdr = (
        f"{'side':5} {'beta':>5} {'s/step':>8} {'s/round':>8} {'gen s':>7} {'upd s':>7} {'lp s':>6} "
        f"{'compl/s':>8} {'len':>6} {'turns':>5} {'reward':>6} {'rounds':>6}"
    )
    print("\n" + hdr + "\n" + "-" * len(hdr))
    agg = {}
    for r in results:
        print(
            f"{r['side']:5} {r['beta']:5.3g} {r['sec_per_step']:8.3f} {r['sec_per_round']:8.3f} {r['gen']:7.3f} "
            f"{r['upd']:7.3f} {r['lp']:6.3f} {r['completions_per_s']:8.1f} {r['len']:6.1f} {r['turns']:5.2f} "
            f"{r['reward']:6.2f} {r['n_rounds']:6d}"
        )
        agg.setdefault((r["side"], r["beta"]), []).append(r["completions_per_s"])
    print()
    for beta in a.beta:
        e, t = agg.get(("erl", beta)), agg.get(("trl", beta))
        if e and t:
            e, t = statistics.median(e), statistics.median(t)
            print(f"beta={beta}: project / TRL completions/s = {e:.1f} / {t:.1f} = {e / t:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "model": info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
