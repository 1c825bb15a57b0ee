"""The evaluation stage, one file per `eval.py` command (`cli` holds the table): `run` (perplexity,
the method §3 profile, W8A8 and needle retrieval of checkpoints side by side), `compare` (training
runs by arm), `export`, `profile`, `truncate`, `interpolate`. Beside them: checkpoint loading
(`checkpoints`), the measurements (`measure`, `quant`, `needle`, `harness` for lm-eval, the probes in
`probes/`), run statistics (`runs`), the report (`report`) and the figures (`plots`, `violin`, `curves`)."""
