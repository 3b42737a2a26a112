"""Reading a Canary-Qwen checkpoint (config, weights, tokenizer) and NeMo's in-process
reference transcripts (the ground truth)."""
