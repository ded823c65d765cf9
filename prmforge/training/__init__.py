"""Fine-tune a process reward model on a build's rows (or a TRL stepwise dataset), evaluate it, score with it.

The modules, bottom up (none imports another package's heavy extras at import time; torch and
transformers are imported inside the functions that need them):

- :mod:`~prmforge.training.config`: the training configuration (YAML, strict pydantic fields).
- :mod:`~prmforge.training.tokenize`: a row's token ids and per-token labels (pure label placement).
- :mod:`~prmforge.training.data`: stepwise rows from TRL files or a build, and their training targets.
- :mod:`~prmforge.training.plan`: the step plan (batch order, learning-rate factor), pure.
- :mod:`~prmforge.training.losses`: the hard and soft step losses.
- :mod:`~prmforge.training.checkpoint`: atomic checkpoints and the latest one to resume from.
- :mod:`~prmforge.training.loop`: the :class:`accelerate.Accelerator` training loop.
- :mod:`~prmforge.training.scoring`: step scores from a trained PRM (token classification, or Qwen2.5-Math-PRM
  style step tags); imported by the PRM annotator, so it never imports :mod:`prmforge.pipelines`.
- :mod:`~prmforge.training.eval_metrics` and :mod:`~prmforge.training.bestofn`: first-error F1 at a threshold,
  threshold tuning, Best-of-N selection, all pure.
- :mod:`~prmforge.training.evaluate`: ProcessBench-format files scored by a PRM.
- :mod:`~prmforge.training.builds`: the only module here that reads build directories (through
  :mod:`prmforge.pipelines`).
"""
