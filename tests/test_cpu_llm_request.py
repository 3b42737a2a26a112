"""canary_triton/cpu_llm/request.py: the checks of an ``llm`` request (TensorRT-LLM's tensors), each
refusal naming the input and the limit; the finish reason of an answer from its tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canary_triton import contract as C
from canary_triton.cpu_llm.batcher import Sampling
from canary_triton.cpu_llm.request import (
    check_llm_tensors,
    finish_reason_of,
    is_stop_request,
    parse_llm_request,
    parse_sampling,
)
from canary_triton.errors import InputError

VOCAB, HIDDEN, ROWS = 100, 4, 10


# -- the llm request -------------------------------------------------------------------------
def test_the_stop_request_is_a_true_stop_tensor():
    assert is_stop_request(np.array([[True]]))
    assert not is_stop_request(np.array([[False]])) and not is_stop_request(None)


def test_sampling_greedy_unless_a_temperature_is_given():
    assert parse_sampling(None, None, None) is None
    assert parse_sampling(np.array([[0.0]], np.float32), np.array([[0.5]], np.float32), np.array([[3]])) is None
    s = parse_sampling(np.array([[0.7]], np.float32), np.array([[0.9]], np.float32), np.array([[42]], np.uint64))
    assert (s.temperature, s.top_p, s.seed) == (pytest.approx(0.7), pytest.approx(0.9), 42)
    assert parse_sampling(np.array([C.MAX_TEMPERATURE]), None, None) == Sampling(C.MAX_TEMPERATURE, 1.0, 0)


@pytest.mark.parametrize(
    "temperature,top_p,message",
    [
        (-0.1, None, f"input 'temperature' is -0.1; it must be between 0 (greedy) and {C.MAX_TEMPERATURE:g}"),
        (C.MAX_TEMPERATURE + 0.5, None, f"input 'temperature' is {C.MAX_TEMPERATURE + 0.5:g}"),
        (float("nan"), None, "input 'temperature' is nan"),
        (0.5, 0.0, "input 'runtime_top_p' is 0; it must be in (0, 1]"),
        (0.5, 1.5, "input 'runtime_top_p' is 1.5; it must be in (0, 1]"),
    ],
)
def test_bad_sampling_is_refused_naming_the_input(temperature, top_p, message):
    with pytest.raises(InputError) as e:
        parse_sampling(np.array([temperature], np.float32), None if top_p is None else np.array([top_p]), None)
    assert message in str(e.value)


def check(ids, lengths=None, out_len=8, table_shape=None, max_output_len=C.MAX_NEW_TOKENS_LIMIT):
    return check_llm_tensors(
        np.asarray(ids),
        None if lengths is None else np.asarray(lengths),
        np.array([[out_len]]),
        table_shape,
        VOCAB,
        HIDDEN,
        ROWS,
        max_output_len,
    )


def test_llm_tensors_are_cut_to_their_length_and_may_address_the_table():
    ids, out_len, rows = check([[5, 6, 7, 0]], [[3]])
    assert ids.dtype == np.int64 and ids.tolist() == [5, 6, 7] and out_len == 8 and rows == 0
    ids, _, rows = check([[1, VOCAB, VOCAB + ROWS - 1]], table_shape=(1, ROWS, HIDDEN))
    assert ids.tolist() == [1, VOCAB, VOCAB + ROWS - 1] and rows == ROWS
    assert check([[1]], table_shape=(3, HIDDEN))[2] == 3  # [rows, hidden] without the batch dimension
    assert check([[1]], out_len=4096, max_output_len=4096)[1] == 4096  # the export's limit, not the contract's


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(ids=[[1, 2]], lengths=[[3]]), "input 'input_lengths' is 3; it must be between 1 and the 2 ids sent"),
        (dict(ids=[[1, 2]], lengths=[[0]]), "input 'input_lengths' is 0"),
        (dict(ids=np.zeros((1, 0), np.int32)), "input 'input_ids' is empty"),
        (
            dict(ids=[[1]], out_len=0),
            f"input 'request_output_len' is 0; it must be between 1 and {C.MAX_NEW_TOKENS_LIMIT}",
        ),
        (
            dict(ids=[[1]], out_len=65, max_output_len=64),
            "input 'request_output_len' is 65; it must be between 1 and 64",
        ),
        (
            dict(ids=[[1]], table_shape=(1, 3, HIDDEN + 1)),
            f"input 'prompt_embedding_table' must be [1, rows, {HIDDEN}], got [1, 3, {HIDDEN + 1}]",
        ),
        (dict(ids=[[1]], table_shape=(2, 3, HIDDEN)), f"must be [1, rows, {HIDDEN}], got [2, 3, {HIDDEN}]"),
        (
            dict(ids=[[1]], table_shape=(1, ROWS + 1, HIDDEN)),
            f"input 'prompt_embedding_table' has {ROWS + 1} rows; the limit is {ROWS}",
        ),
        (
            dict(ids=[[1, VOCAB]]),
            f"input 'input_ids' holds id {VOCAB}; ids must be in [0, {VOCAB}) (vocab {VOCAB} + 0 table rows)",
        ),
        (
            dict(ids=[[1, VOCAB + 2]], table_shape=(1, 2, HIDDEN)),
            f"holds id {VOCAB + 2}; ids must be in [0, {VOCAB + 2})",
        ),
        (dict(ids=[[-4, 1]]), "input 'input_ids' holds id -4"),
    ],
)
def test_bad_llm_tensors_are_refused_naming_the_input_and_the_limit(kwargs, message):
    with pytest.raises(InputError) as e:
        check(**kwargs)
    assert message in str(e.value)


def test_a_parsed_llm_request_carries_the_table_the_end_id_and_streaming():
    table = np.arange(2 * HIDDEN, dtype=np.float32).reshape(1, 2, HIDDEN)
    r = parse_llm_request(
        np.array([[1, VOCAB, VOCAB + 1, 2]], np.int32),
        np.array([[4]]),
        np.array([[6]]),
        np.array([[7]]),
        table,
        np.array([[True]]),
        VOCAB,
        HIDDEN,
        ROWS,
        temperature=np.array([[0.5]], np.float32),
        seed=np.array([[9]], np.uint64),
    )
    assert r.input_ids.dtype == torch.int64 and r.input_ids.tolist() == [1, VOCAB, VOCAB + 1, 2]
    assert r.max_new_tokens == 6 and r.end_id == 7 and r.streaming is True
    assert r.table.shape == (2, HIDDEN) and torch.equal(r.table, torch.from_numpy(table[0]))
    assert r.sampling == Sampling(temperature=0.5, top_p=1.0, seed=9)


def test_a_parsed_llm_request_without_the_optional_tensors():
    r = parse_llm_request(np.array([[3, 4]]), None, np.array([[1]]), None, None, None, VOCAB, HIDDEN, ROWS)
    assert r.input_ids.tolist() == [3, 4] and r.end_id == -1 and r.table is None
    assert r.streaming is False and r.sampling is None


def test_the_cpu_llm_refuses_a_table_that_is_not_fp32():
    with pytest.raises(InputError, match="input 'prompt_embedding_table' must be FP32 in the CPU profile, got float16"):
        parse_llm_request(
            np.array([[VOCAB]]),
            None,
            np.array([[1]]),
            None,
            np.zeros((1, 1, HIDDEN), np.float16),
            None,
            VOCAB,
            HIDDEN,
            ROWS,
        )


# -- the finish reason -----------------------------------------------------------------------
END = 9


@pytest.mark.parametrize(
    "tokens,limit,reason",
    [
        ([], 4, "stop"),  # the end id came first (not returned)
        ([1, 2], 4, "stop"),  # under the limit: only the end id ends a generation early
        ([1, 2, 3, 4], 4, "length"),  # the limit, no end id: the limit cut it
        ([1, 2, 3, END], 4, "stop"),  # an engine that returns the end id: it ended at the limit
        ([1, 2, END], 4, "stop"),
        ([7], 1, "length"),
        (np.array([1, 2, 3, 4], np.int32), 4, "length"),  # the llm's ids, as they come
    ],
)
def test_length_when_the_limit_cut_the_answer_else_stop(tokens, limit, reason):
    got = finish_reason_of(tokens, limit, END)
    assert got is C.FinishReason(reason) and str(got) == reason and got.ok


def test_the_finish_reason_needs_a_limit():
    with pytest.raises(ValueError, match="the output-length limit must be >= 1, got 0"):
        finish_reason_of([1], 0, END)
