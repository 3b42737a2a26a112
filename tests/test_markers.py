"""The suite's `served` marker (tests/conftest.py): set from the fixtures a test depends on, and
required of any test that starts a tritonserver in this process."""

from __future__ import annotations

import pytest

from canary_triton.serving.tritonserver import ServerOptions, TritonServer

from .conftest import starts_a_server


def test_server_fixtures_are_known_by_their_names():
    for name in ("server_trained", "server_random", "strict_server", "gated_server"):
        assert starts_a_server(name), name
    for name in ("exported_trained", "oracle_random", "tiny_random_dir", "serving", "observer"):
        assert not starts_a_server(name), name


@pytest.fixture
def stand_in_server():
    """Named like a server fixture, starts nothing: its users are marked `served` all the same."""
    return None


@pytest.fixture
def through_a_server(stand_in_server):
    return stand_in_server


def test_a_test_using_a_server_fixture_through_another_is_marked(through_a_server, request):
    assert request.node.get_closest_marker("served") is not None


def test_a_test_without_one_is_not(request):
    assert request.node.get_closest_marker("served") is None


def test_starting_tritonserver_in_an_unmarked_test_fails_before_launching_it(tmp_path):
    server = TritonServer(tmp_path / "no-repository", ServerOptions(), workdir=tmp_path)
    with pytest.raises(RuntimeError, match="starts a tritonserver but is not marked `served`"):
        server.start(1)
    assert server.proc is None  # nothing was launched
