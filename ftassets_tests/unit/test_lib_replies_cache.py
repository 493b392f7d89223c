"""The replies cache: a key for everything replies depend on, and nothing stale served."""

from ftassets.lib.evaluation import replies_cache
from ftassets.lib.evaluation.replies_cache import RepliesCache

PROMPTS = [{"task": "qa", "prompt": [{"role": "user", "content": "What is 2 + 2?"}]},
           {"task": "summary", "prompt": [{"role": "user", "content": "Summarise: the VPN drops."}]}]
POLICY = {"default": {"max_new_tokens": 32, "temperature": 0.0}, "summary": {"temperature": 0.2}}


def test_the_key_changes_with_anything_the_replies_depend_on():
    base = replies_cache.key("merged:abc", {"chat_template": "{{ messages }}"}, PROMPTS, POLICY)
    assert base == replies_cache.key("merged:abc", {"chat_template": "{{ messages }}"}, [dict(p) for p in PROMPTS], dict(POLICY))
    changed = [replies_cache.key("merged:abd", {"chat_template": "{{ messages }}"}, PROMPTS, POLICY),
               replies_cache.key("merged:abc", {"chat_template": "{{ other }}"}, PROMPTS, POLICY),
               replies_cache.key("merged:abc", {"chat_template": "{{ messages }}"}, PROMPTS[:1], POLICY),
               replies_cache.key("merged:abc", {"chat_template": "{{ messages }}"}, [PROMPTS[1], PROMPTS[0]], POLICY),
               replies_cache.key("merged:abc", {"chat_template": "{{ messages }}"}, PROMPTS, {**POLICY, "summary": {"temperature": 0.3}}),
               replies_cache.key("merged:abc", {"chat_template": "{{ messages }}"}, PROMPTS, {**POLICY, "qa": {"max_new_tokens": 8}})]
    assert len({base, *changed}) == 7
    # a policy entry for a task not among the prompts changes nothing
    assert base == replies_cache.key("merged:abc", {"chat_template": "{{ messages }}"}, PROMPTS, {**POLICY, "triage": {"temperature": 1}})


def test_replies_are_generated_once_and_a_damaged_entry_is_generated_again(tmp_path):
    cache, calls = RepliesCache(tmp_path, keep=2), []

    def generate():
        calls.append(1)
        return ["4", "The VPN drops."]
    assert cache.replies("k1", 2, generate) == (["4", "The VPN drops."], False)
    assert cache.replies("k1", 2, generate) == (["4", "The VPN drops."], True) and len(calls) == 1
    assert cache.get("k1", 3) is None  # another number of prompts: never served
    (tmp_path / "k1.json").write_text("{not json")
    assert cache.replies("k1", 2, generate) == (["4", "The VPN drops."], False) and len(calls) == 2
    for entry in ("k2", "k3"):
        cache.put(entry, ["a", "b"])
    assert len(list(tmp_path.glob("*.json"))) == 2  # bounded: the least recently used went
