"""The embedded default policy (``policy.model: tiny``), built offline by the init stage: a word-level tokenizer
and a small Llama-style model (model.py), warm-started on a self-supervised curriculum (warmstart.py, with the
board-reading exercises of each grid game in frozenlake.py and sokoban.py). Saved with save_pretrained, so every
later stage loads it exactly like a hub model."""
