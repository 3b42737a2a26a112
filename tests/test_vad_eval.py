"""Smoke test of benchmarks/vad_eval.py (as tests/test_benchmarks.py does for the others): a tiny
setting against the session's served tiny-trained model; output structure and exit code only,
the figures are measurements, not assertions."""

from __future__ import annotations

import json

from benchmarks import vad_eval
from canary_triton.longform.segmenter import VADS


def test_vad_eval_smoke(server_trained, tmp_path):
    out = tmp_path / "vad"
    rc = vad_eval.main(
        [
            "--url",
            server_trained.grpc_url,
            "--clips",
            "4",
            "--snr",
            "10",
            "--noises",
            "pink,babble",
            "--no-speech-s",
            "5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    p = json.loads((out / "vad_eval.json").read_text())
    assert {(r["condition"], r["vad"]) for r in p["rows"]} == {
        (c, v) for c in ("clean", "pink 10 dB", "babble 10 dB") for v in VADS
    }
    for r in p["rows"]:
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and 0 <= r["speech_kept"] <= 1
        assert r["segmenter_rtfx"] > 0 and r["long_form_rtfx"] > 0 and r["wer"] >= 0 and r["wer_one_by_one"] >= 0
    assert set(p["no_speech"]) == {"pink noise", "synthetic music", "near-silence with clicks"}
    for kinds in p["no_speech"].values():
        assert {"plain", *VADS} <= set(kinds) and all(k["chars_per_min"] >= 0 for k in kinds.values())
        assert kinds["silero"]["segments"] == 0 and kinds["silero"]["chars"] == 0
    assert p["served_long_form"]["matches"] is True
    assert "| condition | segmenter |" in (out / "vad_eval.md").read_text()


def test_vad_eval_bad_options(capsys):
    assert vad_eval.main(["--no-server", "--noises", "traffic"]) == 2
    assert vad_eval.main(["--no-server", "--merge-s", "41"]) == 2
    assert "error:" in capsys.readouterr().err
