"""An OpenAI-compatible chat-completions endpoint over kept releases, on FastAPI (the maintained ASGI stack
dagster-webserver and MLflow already bring).

Why not `transformers serve`: it names models by hub id or path, applies no release's decoding policy
and cannot refuse a rejected release by name; vLLM needs a GPU. Here the request's `model` is a release
name (or `current`), each release answers with its own chat template and decoding policy through the
evaluation's generation code (a greedy reply is the evaluated one), `max_tokens` and `temperature`
override the policy as the OpenAI API defines them, and `task` (an extra body field) picks a task's
policy. A name that is not served gets 404 with the reason (rejected, or not started with this server)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str


class ChatRequest(BaseModel):
    """The chat-completions request; OpenAI fields this server does not use are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    stream: bool = False
    task: str | None = None  # an extra body field: answer with this task's decoding policy


class SharedBase:
    """One base model in memory with the adapter stacks of several releases loaded on it (peft, each stack
    a set of live LoRA adapters); a request activates its release's stack. The base is verified against
    every bundle's adapters.json (weights sha256) before any adapter is loaded."""

    def __init__(self, base_dir: Path, bundles: dict[str, Path]):
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from ftassets.lib.core.models import _warm_up, weights_sha256
        from ftassets.lib.release.serving import adapter_stack

        found = weights_sha256(Path(base_dir))
        stacks = {name: adapter_stack(bundle, found) for name, bundle in bundles.items()}
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, use_safetensors=True,
                                                     trust_remote_code=False)
        self.active: dict[str, list[str]] = {}
        for r, (name, stack) in enumerate(stacks.items()):
            self.active[name] = [f"release{r}_{i}" for i in range(len(stack))]
            for adapter_name, path in zip(self.active[name], stack):
                if not isinstance(model, PeftModel):
                    model = PeftModel.from_pretrained(model, str(path), adapter_name=adapter_name)
                else:
                    model.load_adapter(str(path), adapter_name=adapter_name)
        self.model = model.eval()
        self.lock = threading.Lock()
        for name in self.active:  # peft's first pass of a fresh stack may differ (lib/core/models._warm_up)
            self.activate(name)
            _warm_up(self.model)

    def activate(self, name: str) -> None:
        self.model.base_model.set_adapter(self.active[name])


@dataclass
class Served:
    """One release the server answers for: its kept bundle (merged weights, loaded on first use), or its
    adapter stack on a SharedBase."""

    name: str
    bundle: Path
    shared: SharedBase | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    _talk: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, messages: list[dict], task: str | None, max_tokens: int | None,
               temperature: float | None) -> tuple[str, dict, str]:
        """(reply, usage, finish_reason) under the release's decoding policy, with the request's overrides."""
        from ftassets.lib.core.generation import generate, task_settings
        from ftassets.lib.release.chat import Conversation

        lock = self.shared.lock if self.shared else self._lock
        with lock:  # one generation at a time per model: CPU-bound, and the model is shared
            if self._talk is None:
                self._talk = Conversation(self.bundle, model=self.shared.model if self.shared else None)
            if self.shared:
                self.shared.activate(self.name)
            talk = self._talk
            if task is not None and task not in talk.policy:
                raise KeyError(f"task {task!r} is not in {self.name}'s decoding policy")
            settings = task_settings(talk.policy, task or "default")
            if max_tokens is not None:
                settings["max_new_tokens"] = max_tokens
            if temperature is not None:
                settings["temperature"] = temperature
            stopped = [None]  # (prompt tokens, tokens generated, ended at EOS), from the generation itself
            reply = generate(talk.model, talk.tokenizer, [messages], max_new_tokens=settings["max_new_tokens"],
                             temperature=settings["temperature"], stopped=stopped)[0]
        prompt_tokens, completion_tokens, at_eos = stopped[0]
        return reply, {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                       "total_tokens": prompt_tokens + completion_tokens}, "stop" if at_eos else "length"


def build_app(served: dict[str, Served], refused: dict[str, str]):
    """The ASGI app: `served` by name (aliases may share one Served), `refused` maps other known release
    names to the reason they are not served."""
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="ftassets releases", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str, kind: str):
        return HTTPException(status_code=status, detail={"error": {"message": message, "type": kind, "code": kind}})

    @app.exception_handler(HTTPException)
    async def openai_error(request, exc: HTTPException):  # the body the openai client reads its message from
        from fastapi.responses import JSONResponse

        return JSONResponse(status_code=exc.status_code, content=exc.detail)

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": s.created, "owned_by": "ftassets"}
                                           for name, s in served.items()]}

    @app.post("/v1/chat/completions")
    def chat(request: ChatRequest):
        model = served.get(request.model)
        if model is None:
            reason = refused.get(request.model, "no release of that name in this instance")
            raise error(404, f"model {request.model!r} is not served: {reason}", "model_not_found")
        if request.stream:
            raise error(400, "stream=true is not supported by this server; ask without streaming", "invalid_request_error")
        if not request.messages:
            raise error(400, "messages is empty", "invalid_request_error")
        limit = request.max_completion_tokens or request.max_tokens
        if limit is not None and limit < 1:
            raise error(400, "max_tokens must be at least 1", "invalid_request_error")
        try:
            reply, usage, finish = model.answer([m.model_dump() for m in request.messages], request.task, limit,
                                                request.temperature)
        except KeyError as exc:
            raise error(400, exc.args[0], "invalid_request_error") from None
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model.name, "choices": [{"index": 0, "finish_reason": finish,
                                                  "message": {"role": "assistant", "content": reply}}],
                "usage": usage}

    return app


def serve(app, host: str, port: int) -> None:
    import uvicorn

    if host not in LOOPBACK:
        raise ValueError(f"serve binds to loopback only (127.0.0.1, localhost, ::1), not {host!r}")
    uvicorn.run(app, host=host, port=port, log_level="warning")
