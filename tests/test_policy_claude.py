"""policy=claude through the real anthropic client over a local fake transport (httpx2.MockTransport), no network."""

from __future__ import annotations

import base64
import json
import re
import sys
import typing
from pathlib import Path

import httpx2
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "claude"))

from fakes import (
    FAKE_KEY,
    FakeAnthropicAPI,
    StaticFallback,
    api_error,
    make_view,
    node,
    standard_nodes,
    text_reply,
    tool_reply,
)

from agent.policies import PolicyContext, build_policy
from agent.policies.claude.client import LLMAccessError, MissingAPIKeyError
from agent.policies.claude.llm_cost import PRICES, price_for, usage_cost
from agent.policies.claude.policy import ClaudePolicy
from agent.policies.claude.prompt import END_BLOCK_TOOL, PROPOSE_TOOL
from agent.policies.claude.settings import DEFAULT_MODEL, ClaudeSettings
from mpm_inr.errors import ConfigError, UserError


def child(slot=0, parent=5, strategy="exploit", overrides=None, **extra):
    c = {"slot": slot, "parent": parent, "strategy": strategy,
         "overrides": {"train.total_steps": 3000} if overrides is None else overrides,
         "mutation": "train.total_steps: 2000 -> 3000", "rationale": "node 5 has the highest UCB",
         "observation": "node 5: R2=0.995310, slope 0.99", "log_entry": "Parent rule: highest UCB",
         "memory_updates": ["hidden_dim 512 beat 256 (+0.0043, node 5)"]}
    c.update(extra)
    return c


def make_policy(tmp_path, script, *, fallback=None, settings=None, sleeps=None):
    api = FakeAnthropicAPI(list(script))
    study = tmp_path / "jp_study"
    study.mkdir(exist_ok=True)
    pol = ClaudePolicy(settings or ClaudeSettings(), study, fallback or StaticFallback(), api_key=FAKE_KEY,
                       http_client=api.client(), sleep=(sleeps.append if sleeps is not None else lambda s: None))
    return pol, api, study


def heuristic(study):
    from agent.policies.heuristic import build

    return build({}, PolicyContext(study_dir=study, seed=0, config={}))


def transcripts(study):
    return [json.loads(p.read_text()) for p in sorted((study / "transcripts").glob("*.json"))]


# ------------------------------------------------------------------------------------------------ model & config

def test_default_model_is_not_deprecated_in_installed_sdk():
    from anthropic._data.deprecated_models import DEPRECATED_MODELS
    from anthropic.types.model_param import ModelParam

    assert DEPRECATED_MODELS, "the SDK's deprecation list moved; update this test"
    assert DEFAULT_MODEL not in DEPRECATED_MODELS
    known = set(typing.get_args(typing.get_args(ModelParam)[0]))
    assert DEFAULT_MODEL in known, f"{DEFAULT_MODEL} is not a model the installed SDK knows"
    assert price_for(DEFAULT_MODEL).basis.startswith("table:")  # priced, not the unknown-model fallback


def test_pricing_table_is_used_and_unknown_models_are_priced_high():
    usd, basis = usage_cost("claude-sonnet-4-6", {"input_tokens": 1_000_000, "output_tokens": 100_000})
    assert usd == pytest.approx(3.0 + 1.5) and "2026" in basis
    dated, _ = usage_cost("claude-haiku-4-5-20251001", {"input_tokens": 1_000_000})
    assert dated == pytest.approx(1.0)
    unknown = price_for("claude-future-9")
    assert unknown.basis.startswith("unknown model") and unknown.price.output == max(p.output for p in PRICES.values())


def test_settings_reject_unknown_keys_and_bad_budget():
    s = ClaudeSettings.from_config({"model": "claude-opus-4-7", "max_tokens": 2000}, {"max_usd": 1.5,
                                                                                       "max_iterations": 10})
    assert (s.model, s.max_usd, s.max_iterations) == ("claude-opus-4-7", 1.5, 10)
    with pytest.raises(ConfigError, match="unknown key"):
        ClaudeSettings.from_config({"modle": "x"})
    with pytest.raises(ConfigError, match="max_usd"):
        ClaudeSettings.from_config({}, {"max_usd": -1})
    with pytest.raises(ConfigError, match="budget"):
        ClaudeSettings.from_config({}, {"max_dollars": 3})


def test_missing_api_key_is_a_one_line_user_error_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ctx = PolicyContext(study_dir=tmp_path / "s", seed=0, config={})
    with pytest.raises(MissingAPIKeyError) as err:
        build_policy("claude", {"model": DEFAULT_MODEL}, ctx)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value) and "ANTHROPIC_API_KEY" in str(err.value)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "   ")
    with pytest.raises(MissingAPIKeyError):
        build_policy("claude", {}, ctx)
    assert not (tmp_path / "s" / "transcripts").exists()


def test_factory_reads_key_from_env_only(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    pol = build_policy("claude", {"budget": {"max_usd": 2.0}}, PolicyContext(study_dir=tmp_path, seed=0))
    assert pol.name == "claude" and pol.client.budget.max_usd == 2.0 and pol.fallback.name == "heuristic"


# ------------------------------------------------------------------------------------------------ the happy path

def test_tool_call_becomes_proposal_with_prompt_image_and_cost(tmp_path):
    pol, api, study = make_policy(tmp_path, [tool_reply(PROPOSE_TOOL, {"children": [child()]},
                                                        usage=(6000, 500))])
    view = make_view(study, standard_nodes(5))
    [p] = pol.propose(view, ["auto"])

    assert (p.parent_id, p.strategy, p.overrides) == (5, "exploit", {"train.total_steps": "3000"})
    assert p.observation.startswith("node 5") and p.memory_updates and p.code_diff is None
    assert p.llm["policy"] == "claude" and p.llm["fallback"] is None and p.llm["calls"] == 1
    assert (p.llm["tokens_in"], p.llm["tokens_out"]) == (6000, 500)
    assert p.llm["usd"] == pytest.approx((6000 * 3 + 500 * 15) / 1e6)

    [req] = api.requests
    assert req["model"] == DEFAULT_MODEL and req["tool_choice"]["name"] == PROPOSE_TOOL
    assert req["tool_choice"]["type"] == "tool" and req["tools"][0]["name"] == PROPOSE_TOOL
    text, image = req["messages"][0]["content"]
    for expected in ("Mutate ONE parameter", "lr 8e-05 beats 4e-05",           # instructions, memory
                     "Node 5: UCB=", "R2=0.995310",                            # ucb_scores.txt lines
                     "\"final_r2\": 0.99531", "branching_rate", "optimizer.lr: float in"):
        assert expected in text["text"], expected
    assert image["type"] == "image" and image["source"]["media_type"] == "image/png"
    assert base64.b64decode(image["source"]["data"]) == view.field_png.read_bytes()
    assert api.headers[0]["authorization"] == f"Bearer {FAKE_KEY}"

    [rec] = transcripts(study)
    assert rec["call_type"] == "propose" and rec["validation"] == {"ok": True, "errors": []}
    assert rec["usage"]["input_tokens"] == 6000 and rec["cost_usd"] == pytest.approx(p.llm["usd"])
    assert rec["request"]["headers"]["authorization"] == "[REDACTED]"
    assert "data" not in rec["request"]["body"]["messages"][0]["content"][1]["source"]  # image elided, hash kept
    assert rec["started_at"] and rec["finished_at"] and rec["index"] == 0


def test_no_plot_means_no_image_block(tmp_path):
    pol, api, study = make_policy(tmp_path, [tool_reply(PROPOSE_TOOL, {"children": [child(parent=None)]})])
    pol.propose(make_view(study, [], with_png=False), ["auto"])
    content = api.requests[0]["messages"][0]["content"]
    assert [c["type"] for c in content] == ["text"]
    assert "(empty: no node in this block yet" in content[0]["text"] and "no plot available" in content[0]["text"]


def test_batch_round_fills_every_slot_and_books_cost_once(tmp_path):
    kids = [child(slot=1, parent=3, overrides={"model.omega": 15}), child(slot=0, parent=5)]
    pol, _, study = make_policy(tmp_path, [tool_reply(PROPOSE_TOOL, {"children": kids}, usage=(7000, 900))])
    props = pol.propose(make_view(study, standard_nodes(5)), ["exploit", "exploit"])
    assert [p.parent_id for p in props] == [5, 3] and props[1].overrides == {"model.omega": "15.0"}
    assert props[0].llm["tokens_in"] == 7000 and props[1].llm["tokens_in"] == 0
    assert props[1].llm["shared_with_slot"] == 0 and props[1].llm["transcripts"] == props[0].llm["transcripts"]


def test_end_block_tool_becomes_decision(tmp_path):
    reply = {"next_field": "F", "next_n_training_frames": 100, "instruction_edits": "- start omega at 20",
             "summary": "Jp@48f best R2=0.99688 (node 6)", "principles": ["omega 20 > 30 (nodes 3, 5, 6)"],
             "ucb_c": 1.0, "next_overrides": {"model.omega": 20}}
    pol, api, study = make_policy(tmp_path, [tool_reply(END_BLOCK_TOOL, reply)])
    d = pol.end_block(make_view(study, standard_nodes(6)))
    assert (d.next_field, d.next_n_training_frames, d.ucb_c) == ("F", 100, 1.0)
    assert d.next_overrides == {"model.omega": "20.0"} and d.instruction_edits == "- start omega at 20"
    assert d.llm["call_type"] == "end_block" and d.llm["fallback"] is None
    assert api.requests[0]["tool_choice"]["name"] == END_BLOCK_TOOL
    assert ">>> BLOCK END <<<" in api.requests[0]["messages"][0]["content"][0]["text"]


# ------------------------------------------------------------------------------------------------ malformed replies

def test_malformed_reply_gets_one_repair_then_falls_back_to_heuristic(tmp_path):
    study = tmp_path / "jp_study"
    study.mkdir()
    fb = heuristic(study)
    hostile = child(overrides={"hydra.run.dir": "/tmp/x", "train.total_steps": "${oc.env:HOME}"})
    pol, api, _ = make_policy(tmp_path, [text_reply("Let me think about this."),
                                         tool_reply(PROPOSE_TOOL, {"children": [hostile]}, msg_id="msg_2")],
                              fallback=fb)
    view = make_view(study, standard_nodes(5))
    [p] = pol.propose(view, ["auto"])

    assert len(api.requests) == 2  # the first request and exactly one repair, nothing more
    repair_turn = api.requests[1]["messages"]
    assert [m["role"] for m in repair_turn] == ["user", "assistant", "user"]
    assert "no call of tool propose_children" in repair_turn[2]["content"][0]["text"]
    assert p.llm["policy"] == "heuristic" and "after one repair" in p.llm["fallback"]
    assert "hydra" in p.llm["fallback"] and p.llm["calls"] == 2 and p.llm["tokens_in"] > 0
    expected = fb.propose(view, ["auto"])[0]
    assert (p.parent_id, p.strategy, p.overrides) == (expected.parent_id, expected.strategy, expected.overrides)
    recs = transcripts(study)
    assert [r["attempt"] for r in recs] == ["initial", "repair"]
    assert [r["validation"]["ok"] for r in recs] == [False, False]


def test_repair_with_validation_error_can_succeed(tmp_path):
    bad = child(parent=99)
    pol, api, study = make_policy(tmp_path, [tool_reply(PROPOSE_TOOL, {"children": [bad]}, msg_id="msg_bad"),
                                             tool_reply(PROPOSE_TOOL, {"children": [child()]}, msg_id="msg_ok")])
    [p] = pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert p.parent_id == 5 and p.llm["policy"] == "claude" and p.llm["repaired"] is True
    result = api.requests[1]["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True
    assert result["tool_use_id"] == "toolu_msg_bad" and "99 is not a finished node" in result["content"]


@pytest.mark.parametrize("bad, message", [
    ({"children": [child(slot=0), child(slot=0)]}, "minItems|maxItems|is too long|expected"),
    ({"children": [child(strategy="yolo")]}, "is not one of"),
    ({"children": [child(parent=3, overrides={"optimizer.lr": 0.00016})]}, "already failed"),
    ({"children": [child(overrides={"model.n_layers": 12})]}, "out of range"),
    ({"children": [child(overrides={"+model.extra": 1})]}, "not allowed"),
])
def test_invalid_replies_are_rejected_with_a_reason(tmp_path, bad, message):
    pol, api, study = make_policy(tmp_path, [tool_reply(PROPOSE_TOOL, bad), tool_reply(PROPOSE_TOOL, bad)])
    [p] = pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert p.llm["policy"] == "heuristic" and len(api.requests) == 2
    assert re.search(message, transcripts(study)[0]["validation"]["errors"][0]), transcripts(study)[0]["validation"]


def test_end_block_off_progression_is_repaired(tmp_path):
    bad = {"next_field": "Jp", "next_n_training_frames": 300, "instruction_edits": "", "summary": "s"}
    pol, _, study = make_policy(tmp_path, [tool_reply(END_BLOCK_TOOL, bad),
                                           tool_reply(END_BLOCK_TOOL, {**bad, "next_n_training_frames": 200})])
    d = pol.end_block(make_view(study, standard_nodes(6)))
    assert d.next_n_training_frames == 200 and d.llm["repaired"] is True
    assert "300 is not one of" in transcripts(study)[0]["validation"]["errors"][0]


# ------------------------------------------------------------------------------------------------ HTTP failures

def test_429_is_retried_with_exponential_backoff_then_succeeds(tmp_path):
    sleeps: list[float] = []
    script = [api_error(429, "rate_limit_error", "rate limited"), api_error(529, "overloaded_error", "busy"),
              tool_reply(PROPOSE_TOOL, {"children": [child()]})]
    pol, api, study = make_policy(tmp_path, script, sleeps=sleeps)
    [p] = pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert p.llm["policy"] == "claude" and p.llm["calls"] == 3 and len(api.requests) == 3
    assert sleeps == [2.0, 4.0]  # backoff_base_s * 2**try
    recs = transcripts(study)
    assert [(r["http_try"], r["response"]["status"]) for r in recs] == [(0, 429), (1, 529), (2, 200)]
    assert recs[0]["error"]["type"] == "RateLimitError"


def test_retry_after_header_is_honoured_and_capped(tmp_path):
    sleeps: list[float] = []
    script = [api_error(429, "rate_limit_error", "x", {"retry-after": "7"}),
              api_error(429, "rate_limit_error", "x", {"retry-after": "9999"}),
              tool_reply(PROPOSE_TOOL, {"children": [child()]})]
    pol, _, study = make_policy(tmp_path, script, sleeps=sleeps)
    pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert sleeps == [7.0, 60.0]


def test_connection_errors_are_retried(tmp_path):
    sleeps: list[float] = []
    script = [httpx2.ConnectError("connection refused"), tool_reply(PROPOSE_TOOL, {"children": [child()]})]
    pol, _, study = make_policy(tmp_path, script, sleeps=sleeps)
    [p] = pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert p.llm["policy"] == "claude" and sleeps == [2.0]
    assert transcripts(study)[0]["response"] is None and transcripts(study)[0]["error"]["type"] == "APIConnectionError"


def test_exhausted_retries_fall_back_and_record_why(tmp_path):
    sleeps: list[float] = []
    pol, api, study = make_policy(tmp_path, [api_error(500, "api_error", "boom")] * 3, sleeps=sleeps,
                                  settings=ClaudeSettings(max_retries=2))
    [p] = pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert len(api.requests) == 3 and sleeps == [2.0, 4.0]
    assert p.llm["policy"] == "heuristic" and p.llm["fallback"].startswith("API call failed: HTTP 500")


def test_bad_request_is_not_retried(tmp_path):
    pol, api, study = make_policy(tmp_path, [api_error(400, "invalid_request_error", "prompt is too long")])
    [p] = pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert len(api.requests) == 1 and "HTTP 400" in p.llm["fallback"]


@pytest.mark.parametrize("status, kind", [(401, "authentication_error"), (404, "not_found_error")])
def test_wrong_key_or_model_stops_the_study_with_one_line(tmp_path, status, kind):
    pol, api, study = make_policy(tmp_path, [api_error(status, kind, f"invalid x-api-key {FAKE_KEY}")])
    with pytest.raises(LLMAccessError) as err:
        pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert "\n" not in str(err.value) and FAKE_KEY not in str(err.value) and len(api.requests) == 1


# ------------------------------------------------------------------------------------------------ secrets & budget

def test_api_key_never_reaches_any_file(tmp_path):
    echo = api_error(429, "rate_limit_error", f"key {FAKE_KEY} is rate limited")  # a server echoing the key
    script = [echo, text_reply(f"my key is {FAKE_KEY}"), tool_reply(PROPOSE_TOOL, {"children": [child(
        observation=f"leak {FAKE_KEY}")]}), tool_reply(END_BLOCK_TOOL, {"next_field": "F",
                                                                        "next_n_training_frames": 48,
                                                                        "instruction_edits": "", "summary": "s"})]
    pol, _, study = make_policy(tmp_path, script)
    view = make_view(study, standard_nodes(5))
    props = pol.propose(view, ["auto"])
    decision = pol.end_block(view)
    files = [p for p in study.rglob("*") if p.is_file()]
    assert len(list((study / "transcripts").glob("*.json"))) == 4
    for f in files:
        assert FAKE_KEY not in f.read_text(errors="replace"), f
    assert FAKE_KEY not in json.dumps([p.llm for p in props] + [decision.llm])
    assert "[REDACTED]" in (study / "transcripts" / "00000_propose.json").read_text()


def test_usd_cap_falls_back_without_calling_and_stays_off(tmp_path):
    pol, api, study = make_policy(tmp_path, [], settings=ClaudeSettings(max_usd=0.01))
    view = make_view(study, standard_nodes(5))
    [p] = pol.propose(view, ["auto"])
    d = pol.end_block(view)
    assert api.requests == [] and "budget.max_usd=0.01 would be exceeded" in p.llm["fallback"]
    assert d.llm["fallback"] == p.llm["fallback"] and p.llm["policy"] == "heuristic"


def test_usd_cap_trips_after_spending_and_survives_a_resume(tmp_path):
    expensive = tool_reply(PROPOSE_TOOL, {"children": [child()]}, usage=(300_000, 4_000))  # $0.96
    settings = ClaudeSettings(max_usd=1.0)
    pol, api, study = make_policy(tmp_path, [expensive], settings=settings)
    view = make_view(study, standard_nodes(5))
    assert pol.propose(view, ["auto"])[0].llm["policy"] == "claude"
    assert pol.client.budget.spent_usd == pytest.approx(0.96)
    assert "budget.max_usd" in pol.propose(view, ["auto"])[0].llm["fallback"] and len(api.requests) == 1
    # a fresh process on the same study restores what was spent from the transcripts
    again, api2, _ = make_policy(tmp_path, [], settings=settings)
    assert again.client.budget.spent_usd == pytest.approx(0.96) and again.client.budget.llm_iterations == 1
    assert again.propose(view, ["auto"])[0].llm["policy"] == "heuristic" and api2.requests == []


def test_iteration_cap_counts_llm_decided_children(tmp_path):
    script = [tool_reply(PROPOSE_TOOL, {"children": [child()]}) for _ in range(2)]
    pol, api, study = make_policy(tmp_path, script, settings=ClaudeSettings(max_iterations=2))
    view = make_view(study, standard_nodes(5))
    assert [pol.propose(view, ["auto"])[0].llm["policy"] for _ in range(3)] == ["claude", "claude", "heuristic"]
    assert len(api.requests) == 2
    assert "budget.max_iterations=2" in pol.propose(view, ["auto"])[0].llm["fallback"]


def test_rejections_are_shown_to_the_model(tmp_path):
    rejected = node(6, 5, {"model.n_layers": "9"}, status="failed")
    rejected.status, rejected.error = "rejected", "model.n_layers=9: out of range, must be int in [2, 6]"
    pol, api, study = make_policy(tmp_path, [tool_reply(PROPOSE_TOOL, {"children": [child()]})])
    pol.propose(make_view(study, standard_nodes(5), rejections=[rejected]), ["auto"])
    assert "node 6: model.n_layers=9: out of range" in api.requests[0]["messages"][0]["content"][0]["text"]


def test_key_in_config_is_refused_without_echoing_it():
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY environment variable only") as err:
        ClaudeSettings.from_config({"api_key": FAKE_KEY})
    assert FAKE_KEY not in str(err.value)


def test_non_json_success_body_falls_back(tmp_path):
    html = lambda request: httpx2.Response(200, text="<html>proxy error</html>",
                                           headers={"content-type": "text/html"})
    study = tmp_path / "jp_study"
    pol = ClaudePolicy(ClaudeSettings(), study, StaticFallback(), api_key=FAKE_KEY,
                       http_client=httpx2.Client(transport=httpx2.MockTransport(html)), sleep=lambda s: None)
    [p] = pol.propose(make_view(study, standard_nodes(5)), ["auto"])
    assert p.llm["policy"] == "heuristic" and "unusable response" in p.llm["fallback"]
    assert transcripts(study)[0]["error"]["type"] in ("JSONDecodeError", "ValueError")


def test_propose_prompt_carries_the_code_modification_section_and_end_block_does_not(tmp_path):
    end = {"next_field": "F", "next_n_training_frames": 100, "instruction_edits": "", "summary": "s",
           "principles": [], "ucb_c": 1.0, "next_overrides": {}}
    pol, api, study = make_policy(tmp_path, [tool_reply(PROPOSE_TOOL, {"children": [child()]}),
                                             tool_reply(END_BLOCK_TOOL, end)])
    view = make_view(study, standard_nodes(6))
    pol.propose(view, ["auto"])
    pol.end_block(view)
    propose_text, end_text = (r["messages"][0]["content"][0]["text"] for r in api.requests)
    assert "## Code modifications" in propose_text
    assert "## Code modifications" not in end_text


def test_node_lines_carry_the_same_size_svd_beside_compression():
    from types import SimpleNamespace

    from agent.policies.claude.prompt import _node_line

    node = SimpleNamespace(node_id=3, parent_id=1, iteration=3, status="ok", strategy="exploit", changes={},
                           mutation="", error=None, metrics={"final_r2": 0.999, "compression_ratio": 20.5,
                                                             "svd_r2_same_params": 0.9985, "training_time": 3.0})
    assert "compression_ratio=20.5; svd_r2_same_params=0.998500; training_time=3.0s" in _node_line(None, node)
