"""Word error rate and NeMo JSONL manifests (evaluation data in and transcripts out)."""
