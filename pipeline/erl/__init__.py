"""One round of Experiential Reinforcement Learning (experience -> reflection -> consolidation), one module per step.

The method (arXiv 2602.13949; restated in docs/method.md): the policy attempts a task; if it failed, the same policy
reflects on the attempt and writes a revised system prompt; a second attempt runs under that reflection; successful
second attempts become memory and are distilled back under the plain prompt, so the gain stays at deployment with
no extra inference cost. RLVR is the same round with the first attempts only. Read the steps in this order:

  step                      function                            DVC stage              writes
  0  task sets              tasks.task_sets()                   stages/init.py         tasks_{train,test}.parquet
  1  first attempts         attempts.first_attempts()           stages/sample.py       attempts.parquet
  2  feedback (verifier)    feedback.feedback()                 stages/feedback.py     feedback.parquet
  3  reflection             reflect.reflections()               stages/reflect.py      reflections.parquet
  4  second attempt         retry.retries()                     stages/retry.py        retries.parquet
  5  consolidation          consolidate.consolidate()           stages/consolidate.py  samples.parquet, memory.parquet
  6  policy update          update.update()                     stages/update.py       policy/, updates.parquet,
                                                                                       steps.parquet
  7  evaluation             evaluate.evaluate()                 stages/evaluate.py     eval.parquet, metrics.json
     (beyond the paper)     evaluate.evaluate_second_attempts()                        eval_retries.parquet

Each function takes the validated params ``p``, the epoch and the rows of the tables it reads, and returns the rows
of the tables it writes; the stages do the file I/O and the lineage. Each step's module imports only what that step
runs, so a stage's code dependencies (pipeline/codedeps.py) are its own: the model-free steps (feedback,
consolidation) never import torch, the engine or the trainer. The pieces the steps call have their own modules:
``rollout`` (batched multi-turn play), ``prompts``, ``advantages`` (GRPO and RAFT), ``logprobs``, ``losses`` (the
clipped policy loss) and ``trainer`` (the update loop), ``memory``, ``envs``. Randomness comes only from seeds
derived from (run seed, epoch, step, row id), never from global state.

This file imports nothing: importing one step must not import the others.
"""
