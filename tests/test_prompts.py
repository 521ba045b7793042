"""pipeline/prompts.py: reflection parsing, the retry system prompt, the two prompt sets."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.envs import find
from pipeline.prompts import PromptSet, parse_reflection, prompt_set, reflector_messages, retry_system

# every prompt set of every built-in environment, as (env, name)
SETS = [(env, name) for env in ("frozenlake", "sokoban", "qa") for name in sorted(find(env).prompts)]


def test_parse_with_tag():
    assert parse_reflection("thinking... <prompt> go right twice </prompt> done") == ("go right twice", True)


def test_parse_multiple_tags_last_wins():
    text = "<prompt>first</prompt> then <prompt>second</prompt>"
    assert parse_reflection(text) == ("second", True)


def test_parse_closed_then_unclosed_last_wins():
    assert parse_reflection("<prompt>a</prompt> <prompt> b c") == ("b c", True)


def test_parse_unclosed_tag_runs_to_end():
    assert parse_reflection("intro <prompt>\navoid holes\nmove down ") == ("avoid holes\nmove down", True)


def test_parse_no_tag_keeps_whole_text():
    assert parse_reflection("  just some text \n") == ("just some text", False)


def test_parse_empty():
    assert parse_reflection("") == ("", False)


@pytest.mark.parametrize("env, name", SETS)
def test_retry_system_reappends_format_reminder(env, name):
    ps = prompt_set(name, env)
    s = retry_system(ps, "avoid the holes")
    assert s.startswith("avoid the holes")
    assert s.endswith(ps.format_reminder)
    assert s == f"avoid the holes\n{ps.format_reminder}"
    assert retry_system(ps, "") == ps.format_reminder.strip()


def test_every_prompt_set_has_all_fields():
    # every environment has the two sets policy.prompts names by default; QA adds paper-text
    assert all({"tiny", "paper"} <= set(find(env).prompts) for env in ("frozenlake", "sokoban", "qa"))
    for env, name in SETS:
        ps = prompt_set(name, env)
        assert isinstance(ps, PromptSet)
        for f in dataclasses.fields(PromptSet):
            value = getattr(ps, f.name)
            if f.type in ("str", str):
                assert isinstance(value, str) and value.strip(), f"{name}.{f.name} is empty"
        assert "{summary}" in ps.reflector_user and "{memory}" in ps.reflector_user
        assert "{summary}" in ps.no_reflection_system or "{context}" in ps.no_reflection_system
        assert "<prompt>" in ps.reflector_system


@pytest.mark.parametrize("env, name", SETS)
def test_reflector_messages(env, name):
    ps = prompt_set(name, env)
    sys_msg, user = reflector_messages(ps, "SUMMARY", None)
    assert sys_msg == {"role": "system", "content": ps.reflector_system}
    assert user["role"] == "user" and "SUMMARY" in user["content"] and ps.no_memory in user["content"]
    assert "RULES" in reflector_messages(ps, "SUMMARY", "RULES")[1]["content"]
