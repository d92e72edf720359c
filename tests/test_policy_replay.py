"""policy=replay: recorded transcripts reproduce a claude study's decisions, offline and without a key."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "fixtures" / "claude"
sys.path.insert(0, str(HERE))

import make_fixtures
from fakes import FAKE_KEY, make_view, standard_nodes

from agent.policies import PolicyContext, build_policy
from agent.policies.claude.settings import ClaudeSettings
from agent.policies.replay import ReplayError, ReplayPolicy
from mpm_inr.errors import ConfigError


def replay_factory(source: Path, settings: ClaudeSettings | None = None):
    def make(study: Path) -> ReplayPolicy:
        return ReplayPolicy(settings or ClaudeSettings(), study, make_fixtures.heuristic_fallback(study), source)
    return make


def strip(decisions, *, heuristic_content: bool = True):
    """Decisions without the field that names the policy that made them (claude vs replay).

    `heuristic_content=False` keeps only the `llm` record of heuristic fallbacks: the committed fixtures must not
    fail when the heuristic's own choices change.
    """
    out = json.loads(json.dumps(decisions))
    for step in out:
        items = step["result"] if isinstance(step["result"], list) else [step["result"]]
        for i, item in enumerate(items):
            if item["llm"]["policy"] in ("claude", "replay"):
                item["llm"]["policy"] = "llm"
            elif not heuristic_content:
                items[i] = {"llm": item["llm"]}
        if isinstance(step["result"], list):
            step["result"] = items
        else:
            step["result"] = items[0]
    return out


@pytest.mark.parametrize("scenario", sorted(make_fixtures.SCENARIOS))
def test_replay_reproduces_a_recorded_run(tmp_path, scenario, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    recorded, api = make_fixtures.run_scenario(scenario, tmp_path / "live")
    source = tmp_path / "live" / make_fixtures.STUDY / "transcripts"
    replayed, _ = make_fixtures.run_scenario(scenario, tmp_path / "again", policy_factory=replay_factory(source))
    assert strip(replayed) == strip(recorded)
    assert len(api.requests) == len(list(source.glob("*.json")))
    assert not (tmp_path / "again" / make_fixtures.STUDY / "transcripts").exists()  # replay writes none


@pytest.mark.parametrize("scenario", sorted(make_fixtures.SCENARIOS))
def test_committed_fixtures_replay_and_match_their_decisions(tmp_path, scenario):
    source = HERE / scenario / "transcripts"
    committed = json.loads((HERE / scenario / "decisions.json").read_text())
    replayed, _ = make_fixtures.run_scenario(scenario, tmp_path, policy_factory=replay_factory(source))
    assert strip(replayed, heuristic_content=False) == strip(committed, heuristic_content=False)
    for f in source.glob("*.json"):
        assert FAKE_KEY not in f.read_text()


def shape(rec):
    """What a transcript says happened, independent of prompt wording and token counts."""
    resp = rec["response"] or {}
    return (rec["call_type"], rec["attempt"], rec["http_try"], resp.get("status"),
            (rec["validation"] or {}).get("ok"), len((rec["validation"] or {}).get("errors") or []),
            [m["role"] for m in rec["request"]["body"]["messages"]], rec["request"]["headers"].get("authorization"))


@pytest.mark.parametrize("scenario", sorted(make_fixtures.SCENARIOS))
def test_committed_fixtures_are_what_the_policy_writes_today(tmp_path, scenario):
    """Regenerating a fixture gives the same exchanges: the fixtures are the policy's output, not hand-typed."""
    fresh = tmp_path / "fresh"
    make_fixtures.run_scenario(scenario, tmp_path / "work", transcripts=fresh)
    committed = sorted((HERE / scenario / "transcripts").glob("*.json"))
    assert [p.name for p in sorted(fresh.glob("*.json"))] == [p.name for p in committed]
    for path in committed:
        old, new = json.loads(path.read_text()), json.loads((fresh / path.name).read_text())
        assert shape(new) == shape(old), f"{scenario}/{path.name} is stale: run tests/fixtures/claude/make_fixtures.py"
        assert set(new) == set(old)


def test_fixture_contents_cover_retry_repair_fallback_and_code_diff():
    basic = json.loads((HERE / "basic" / "decisions.json").read_text())
    repair = json.loads((HERE / "repair" / "decisions.json").read_text())
    code = json.loads((HERE / "code_diff" / "decisions.json").read_text())
    assert basic[0]["result"][0]["llm"]["calls"] == 2  # 429, then success
    assert len(basic[2]["result"]) == 2 and basic[3]["kind"] == "end_block"
    assert repair[0]["result"][0]["llm"]["repaired"] is True
    assert repair[1]["result"][0]["llm"]["policy"] == "heuristic"
    assert code[0]["result"][0]["code_diff"].startswith("diff --git a/mpm_inr/training/optim.py")
    assert code[0]["result"][0]["strategy"] == "code-modification"


def test_replay_runs_out_with_a_one_line_error(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(HERE / "basic" / "transcripts", source)
    for p in sorted(source.glob("*.json"))[2:]:
        p.unlink()  # keep the 429 and the first success only
    with pytest.raises(ReplayError, match="ran out") as err:
        make_fixtures.run_scenario("basic", tmp_path / "w", policy_factory=replay_factory(source))
    assert "\n" not in str(err.value)


def test_replay_detects_a_different_call_type(tmp_path):
    study = tmp_path / "jp_study"
    pol = replay_factory(HERE / "basic" / "transcripts")(study)
    with pytest.raises(ReplayError, match="records a propose call .* but the study makes a end_block call"):
        pol.end_block(make_view(study, standard_nodes(6)))


def test_replay_detects_a_recorded_repair_the_study_no_longer_makes(tmp_path):
    """If the first reply now validates, the recorded repair turn is not asked for: replay must stop, not skip."""
    source = tmp_path / "src"
    shutil.copytree(HERE / "repair" / "transcripts", source)
    first, fixed = sorted(source.glob("*.json"))[:2]
    rec, good = json.loads(first.read_text()), json.loads(fixed.read_text())
    rec["response"] = good["response"]  # the initial reply is now the valid one
    first.write_text(json.dumps(rec))
    with pytest.raises(ReplayError, match=r"00001 records a propose call \(repair, try 0\).*diverged"):
        make_fixtures.run_scenario("repair", tmp_path / "w", policy_factory=replay_factory(source))


def test_replay_factory_needs_a_transcript_dir_but_no_key(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ctx = PolicyContext(study_dir=tmp_path / "s", seed=0, config={})
    with pytest.raises(ReplayError, match=r"s/transcripts does not exist"):
        build_policy("replay", {"transcripts": None}, ctx)  # null: the study's own transcripts/
    with pytest.raises(ConfigError, match="unknown key"):
        build_policy("replay", {"transcripts": str(HERE / "basic" / "transcripts"), "modle": "x"}, ctx)
    with pytest.raises(ReplayError, match="does not exist"):
        build_policy("replay", {"transcripts": str(tmp_path / "nope")}, ctx)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplayError, match="no transcripts"):
        build_policy("replay", {"transcripts": str(tmp_path / "empty")}, ctx)
    pol = build_policy("replay", {"transcripts": str(HERE / "basic" / "transcripts"), "model": "other"}, ctx)
    assert pol.name == "replay" and pol.settings.model == "claude-sonnet-4-6"  # the recorded model wins


def test_replay_reproduces_an_unusable_response(tmp_path):
    """A 200 with a non-JSON body is recorded as text and replays to the same fallback."""
    import httpx2
    from fakes import StaticFallback

    from agent.policies.claude.policy import ClaudePolicy

    html = lambda request: httpx2.Response(200, text="<html>bad gateway</html>",
                                           headers={"content-type": "text/html"})
    study = tmp_path / "jp_study"
    live = ClaudePolicy(ClaudeSettings(), study, StaticFallback(), api_key=FAKE_KEY,
                        http_client=httpx2.Client(transport=httpx2.MockTransport(html)), sleep=lambda s: None)
    view = make_view(study, standard_nodes(5))
    [p] = live.propose(view, ["auto"])
    replay = ReplayPolicy(ClaudeSettings(), tmp_path / "again", StaticFallback(), study / "transcripts")
    [q] = replay.propose(view, ["auto"])
    assert p.llm["fallback"] == q.llm["fallback"] and "unusable response" in q.llm["fallback"]
