"""Talking to a release: its model loaded from a kept bundle (merged weights, or the adapter stack on the
verified base), and one reply per turn with the release's own chat template and decoding policy,
through the same generation code the evaluation used (so a greedy reply is the evaluated one)."""

from __future__ import annotations

from pathlib import Path

from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.generation import generate_by_task, task_settings
from ftassets.lib.release import serving


class Conversation:
    """One chat with a release: the turns so far and the decoding settings of one task (or the default)."""

    def __init__(self, bundle: Path, base_dir: Path | None = None, task: str = "default", system: str | None = None,
                 model=None):
        """`model`: one already in memory (a server's shared base with this release's stack active)."""
        from ftassets.lib.core.models import load_model, load_tokenizer

        self.bundle = Path(bundle)
        self.policy = serving.decoding_policy(self.bundle)
        if task != "default" and task not in self.policy:
            raise KeyError(f"task {task!r} is not in the release's decoding policy "
                           f"(tasks: {', '.join(k for k in self.policy if k != 'default')})")
        self.task = task
        self.tokenizer = load_tokenizer(self.bundle / file_name("serving_bundle", "model"))
        self.model = (model if model is not None else serving.adapter_model(self.bundle, Path(base_dir))
                      if base_dir is not None else load_model(self.bundle / file_name("serving_bundle", "model")))
        self.messages: list[dict] = [{"role": "system", "content": system}] if system else []

    @property
    def settings(self) -> dict:
        return task_settings(self.policy, self.task)

    def say(self, text: str) -> str:
        """The release's reply to `text`, after the turns so far; both are kept for the next turn."""
        self.messages.append({"role": "user", "content": text})
        reply = generate_by_task(self.model, self.tokenizer, [{"task": self.task, "prompt": list(self.messages)}],
                                 self.policy)[0]
        self.messages.append({"role": "assistant", "content": reply})
        return reply
