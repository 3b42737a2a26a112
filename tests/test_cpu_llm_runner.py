"""canary_triton/cpu_llm/runner.py: the KV cache's growth and shrink, and the runner's prefill and
decode against the Hugging Face Qwen3 forward on a small random model (with and without the
run-time LoRA)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from canary_triton.cpu_llm.runner import CACHE_BLOCK, KvCache, LoraWeights, ModelRunner, RunnerShape

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, LAYERS, VOCAB = 32, 4, 2, 16, 2, 97


def qwen3_config(**changes) -> Qwen3Config:
    kw = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=4 * CACHE_BLOCK,
        tie_word_embeddings=False,
    )
    return Qwen3Config(**{**kw, **changes})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Qwen3ForCausalLM(qwen3_config()).eval()


def reference_logits(model, ids: list[int], delta: dict | None = None) -> torch.Tensor:
    """HF's own forward over the whole sequence: float32 logits [len(ids), vocab]. ``delta``:
    (layer, projection) -> a weight added for the call (the merged LoRA)."""
    saved = {}
    with torch.no_grad():
        for (li, name), d in (delta or {}).items():
            w = getattr(model.model.layers[li].self_attn, name).weight
            saved[(li, name)] = w.clone()
            w += d
        try:
            return model(torch.tensor([ids])).logits[0].float()
        finally:
            for (li, name), w in saved.items():
                getattr(model.model.layers[li].self_attn, name).weight.copy_(w)


def embed(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model.get_input_embeddings()(torch.tensor(ids))


# -- shapes -------------------------------------------------------------------------------------
def test_the_shape_comes_from_the_config():
    s = RunnerShape.of(qwen3_config())
    assert (s.layers, s.kv_heads, s.heads, s.head_dim, s.hidden) == (LAYERS, KV_HEADS, HEADS, HEAD_DIM, HIDDEN)
    cfg = qwen3_config().to_dict()
    cfg["head_dim"] = None  # a config without it: hidden / heads, as HF's Qwen3 computes it
    assert RunnerShape.of(SimpleNamespace(**cfg)).head_dim == HIDDEN // HEADS
    assert s.kv_bytes_per_position(torch.float32) == 2 * LAYERS * KV_HEADS * HEAD_DIM * 4
    assert s.kv_bytes_per_position(torch.bfloat16) == 2 * LAYERS * KV_HEADS * HEAD_DIM * 2
    # Qwen3-1.7B, as the module's docstring says: 229,376 B per position in fp32, 114,688 B in bf16
    real = RunnerShape(layers=28, kv_heads=8, heads=16, head_dim=128, hidden=2048)
    assert (real.kv_bytes_per_position(torch.float32), real.kv_bytes_per_position(torch.bfloat16)) == (229376, 114688)


# -- the KV cache -------------------------------------------------------------------------------
SHAPE = RunnerShape(layers=LAYERS, kv_heads=KV_HEADS, heads=HEADS, head_dim=HEAD_DIM, hidden=HIDDEN)


def test_a_new_cache_holds_one_row_of_one_block():
    c = KvCache(SHAPE, rows=8, max_positions=16 * CACHE_BLOCK, dtype=torch.float32)
    assert (c.capacity, c.allocated_rows, c.reallocations, c.row_growths, c.shrinks) == (CACHE_BLOCK, 1, 0, 0, 0)
    assert len(c.k) == len(c.v) == LAYERS
    assert all(t.shape == (1, KV_HEADS, CACHE_BLOCK, HEAD_DIM) and t.dtype == torch.float32 for t in c.k + c.v)
    assert c.nbytes == SHAPE.kv_bytes_per_position(torch.float32) * CACHE_BLOCK


@pytest.mark.parametrize(
    "positions,blocks", [(1, 1), (CACHE_BLOCK, 1), (CACHE_BLOCK + 1, 2), (3 * CACHE_BLOCK, 4), (5 * CACHE_BLOCK, 8)]
)
def test_capacity_grows_to_a_power_of_two_number_of_blocks(positions, blocks):
    c = KvCache(SHAPE, rows=4, max_positions=16 * CACHE_BLOCK, dtype=torch.float32)
    c.reserve(positions)
    assert c.capacity == blocks * CACHE_BLOCK and c.reallocations == int(blocks > 1)


def test_capacity_stops_at_the_limit_and_beyond_it_is_refused():
    c = KvCache(SHAPE, rows=4, max_positions=3 * CACHE_BLOCK, dtype=torch.float32)
    c.reserve(2 * CACHE_BLOCK + 1)  # four blocks would be past the limit: the limit itself
    assert c.capacity == 3 * CACHE_BLOCK and c.peak_capacity == 3 * CACHE_BLOCK
    with pytest.raises(
        ValueError, match=f"{3 * CACHE_BLOCK + 1} positions exceed the cache's limit of {3 * CACHE_BLOCK}"
    ):
        c.reserve(3 * CACHE_BLOCK + 1)
    with pytest.raises(ValueError, match="5 rows exceed the cache's 4"):
        c.reserve(1, rows=5)


def test_rows_grow_to_a_power_of_two_up_to_the_engines_batch():
    c = KvCache(SHAPE, rows=6, max_positions=4 * CACHE_BLOCK, dtype=torch.float32)
    c.reserve(1, rows=3)
    assert c.allocated_rows == 4 and c.row_growths == 1
    c.reserve(1, rows=2)  # fewer rows never shrink it
    assert c.allocated_rows == 4 and c.row_growths == 1
    c.reserve(1, rows=5)  # 8 would pass the batch of 6
    assert c.allocated_rows == 6 and c.peak_rows == 6 and c.row_growths == 2
    assert all(t.shape[0] == 6 for t in c.k + c.v)


def test_growing_keeps_what_the_rows_hold_and_move_copies_a_row():
    c = KvCache(SHAPE, rows=4, max_positions=8 * CACHE_BLOCK, dtype=torch.float32)
    c.reserve(10, rows=2)
    for i, t in enumerate(c.k + c.v):
        t[:2, :, :10] = torch.randn(2, KV_HEADS, 10, HEAD_DIM) + i
    before = [t[:2, :, :10].clone() for t in c.k + c.v]
    c.reserve(3 * CACHE_BLOCK, rows=3)
    assert (c.capacity, c.allocated_rows) == (4 * CACHE_BLOCK, 4)
    assert all(torch.equal(t[:2, :, :10], b) for t, b in zip(c.k + c.v, before))
    assert all(not t[:, :, 10:].any() and not t[2:].any() for t in c.k + c.v)  # the new room is zeros
    c.move(1, 3, 10)
    assert all(torch.equal(t[3, :, :10], b[1]) for t, b in zip(c.k + c.v, before))


def test_shrink_goes_back_to_one_row_of_one_block_and_counts_only_real_shrinks():
    c = KvCache(SHAPE, rows=4, max_positions=8 * CACHE_BLOCK, dtype=torch.bfloat16)
    c.shrink()
    assert c.shrinks == 0  # already one row of one block
    c.reserve(2 * CACHE_BLOCK, rows=4)
    c.shrink()
    assert (c.capacity, c.allocated_rows, c.shrinks) == (CACHE_BLOCK, 1, 1)
    assert (c.peak_capacity, c.peak_rows) == (2 * CACHE_BLOCK, 4)  # the statistics remember the peak
    assert c.nbytes == SHAPE.kv_bytes_per_position(torch.bfloat16) * CACHE_BLOCK


# -- LoRA weights -------------------------------------------------------------------------------
def test_lora_rank_and_description():
    a, b = torch.zeros(3, HIDDEN), torch.zeros(HEADS * HEAD_DIM, 3)
    lora = LoraWeights(scale=2.0, layers={0: {"q_proj": (a, b), "v_proj": (a, b)}, 1: {"q_proj": (a, b)}})
    assert lora.rank == 3
    assert lora.describe() == "r=3, scale 2, on q_proj/v_proj of 2 layers"
    assert LoraWeights(scale=1.0, layers={}).rank == 0


# -- the runner ---------------------------------------------------------------------------------
def test_sliding_window_layers_are_refused():
    cfg = qwen3_config(use_sliding_window=True, sliding_window=16, max_window_layers=1)
    assert "sliding_attention" in cfg.layer_types
    with pytest.raises(ValueError, match="full attention only"):
        ModelRunner(Qwen3ForCausalLM(cfg), rows=1, max_positions=64)


def test_positions_are_capped_by_the_models_context(model):
    assert ModelRunner(model, rows=2, max_positions=10**6).max_positions == 4 * CACHE_BLOCK
    runner = ModelRunner(model, rows=2, max_positions=100)
    assert runner.max_positions == 100 and runner.cache.max_positions == 100 and runner.dtype == torch.float32


def test_prefill_of_a_padded_batch_equals_each_sequence_alone(model):
    prompts = [[5, 17, 3, 88, 41, 9, 60], [12, 4], [33, 71, 2, 8]]
    runner = ModelRunner(model, rows=4, max_positions=256)
    logits = runner.prefill(0, [embed(model, p) for p in prompts])
    assert logits.shape == (3, VOCAB) and logits.dtype == torch.float32
    for i, p in enumerate(prompts):
        torch.testing.assert_close(logits[i], reference_logits(model, p)[-1], rtol=1e-4, atol=1e-5)
    # the rows' keys and values stand from index 0, as long as each prompt
    assert runner.cache.capacity == CACHE_BLOCK and runner.cache.allocated_rows == 4


def test_decode_steps_of_rows_at_different_positions_equal_the_full_forward(model):
    prompts = [[5, 17, 3, 88, 41], [12, 4, 50]]
    runner = ModelRunner(model, rows=2, max_positions=256)
    logits = runner.prefill(0, [embed(model, p) for p in prompts])
    seqs = [list(p) for p in prompts]
    for _ in range(4):  # greedy: each row appends its argmax, at its own position
        nxt = logits.argmax(-1)
        positions = torch.tensor([len(s) for s in seqs])
        for s, t in zip(seqs, nxt.tolist()):
            s.append(t)
        logits = runner.decode(nxt, positions)
        for i, s in enumerate(seqs):
            torch.testing.assert_close(logits[i], reference_logits(model, s)[-1], rtol=1e-4, atol=1e-5)


def test_decode_past_one_block_grows_the_cache_and_keeps_the_prefix(model):
    prompt = [(7 * i) % VOCAB for i in range(CACHE_BLOCK - 1)]
    runner = ModelRunner(model, rows=1, max_positions=4 * CACHE_BLOCK)
    logits = runner.prefill(0, [embed(model, prompt)])
    seq = list(prompt)
    for _ in range(3):  # positions 127, 128, 129: the second step needs a second block
        t = int(logits.argmax(-1)[0])
        logits = runner.decode(torch.tensor([t]), torch.tensor([len(seq)]))
        seq.append(t)
    assert runner.cache.capacity == 2 * CACHE_BLOCK and runner.cache.reallocations == 1
    torch.testing.assert_close(logits[0], reference_logits(model, seq)[-1], rtol=1e-4, atol=1e-5)


def test_a_row_moved_to_another_decodes_as_before(model):
    prompts = [[1, 2, 3], [40, 50, 60, 70]]
    runner = ModelRunner(model, rows=2, max_positions=128)
    runner.prefill(0, [embed(model, p) for p in prompts])
    runner.move(1, 0, len(prompts[1]))  # row 0 finished; row 1 takes its place
    logits = runner.decode(torch.tensor([9]), torch.tensor([len(prompts[1])]))
    torch.testing.assert_close(logits[0], reference_logits(model, prompts[1] + [9])[-1], rtol=1e-4, atol=1e-5)


def test_run_time_lora_rows_equal_the_merged_model_the_others_the_base(model):
    torch.manual_seed(1)
    r, scale = 3, 1.5
    q_out, v_out = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    mats = {
        li: {
            "q_proj": (0.1 * torch.randn(r, HIDDEN), 0.1 * torch.randn(q_out, r)),
            "v_proj": (0.1 * torch.randn(r, HIDDEN), 0.1 * torch.randn(v_out, r)),
        }
        for li in range(LAYERS)
    }
    lora = LoraWeights(scale=scale, layers=mats)
    merged = {(li, name): scale * b @ a for li, m in mats.items() for name, (a, b) in m.items()}
    prompts = [[5, 17, 3, 88], [12, 4, 9]]
    runner = ModelRunner(model, rows=2, max_positions=128, lora=lora)
    logits = runner.prefill(0, [embed(model, p) for p in prompts], adapter=[True, False])  # one batch, both modes
    torch.testing.assert_close(logits[0], reference_logits(model, prompts[0], merged)[-1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[1], reference_logits(model, prompts[1])[-1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(logits[0], reference_logits(model, prompts[0])[-1], atol=1e-3)  # the adapter acts
    tokens = torch.tensor([30, 31])
    logits = runner.decode(tokens, torch.tensor([4, 3]), adapter=[True, False])
    torch.testing.assert_close(logits[0], reference_logits(model, prompts[0] + [30], merged)[-1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[1], reference_logits(model, prompts[1] + [31])[-1], rtol=1e-4, atol=1e-5)
    # all rows with the adapter (the default when it is loaded)
    runner = ModelRunner(model, rows=1, max_positions=128, lora=lora)
    logits = runner.prefill(0, [embed(model, prompts[1])])
    torch.testing.assert_close(logits[0], reference_logits(model, prompts[1], merged)[-1], rtol=1e-4, atol=1e-5)
