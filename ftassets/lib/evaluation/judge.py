"""A language model as a judge: the probability that it answers "yes" to the contract's pinned prompt
about one reply, and its agreement with people on the graded blind review.

A local judge (a Hugging Face folder, safetensors only, never remote code) reads the prompt in its chat
template and answers greedily with its first token restricted to yes / no: the probability is the
softmax over those tokens, so it is deterministic and needs no parsing. An endpoint judge (an
OpenAI-compatible server named in the contract; off unless declared) answers at temperature 0 and its
first word is read as yes (1.0) or no (0.0); anything else is no verdict for that reply, with the reason.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.request

from ftassets.lib.core.contract import JudgeSpec

ANSWERS = {"yes": ("yes", "Yes", " yes", " Yes", "YES"), "no": ("no", "No", " no", " No", "NO")}


def fill(template: str, prompt: str, reply: str, reference: str = "") -> str:
    """The pinned prompt with one reply in it (str.replace: braces in the reply stay as they are)."""
    return template.replace("{prompt}", prompt).replace("{reference}", reference).replace("{reply}", reply)


class LocalJudge:
    def __init__(self, spec: JudgeSpec):
        from ftassets.lib.core.models import load_model, load_tokenizer

        self.spec = spec
        self.model = load_model(spec.identity["path"]).eval()
        self.tokenizer = load_tokenizer(spec.identity["path"])
        self.tokenizer.padding_side = "left"
        ids = {word: sorted({self.tokenizer.encode(v, add_special_tokens=False)[0] for v in variants})
               for word, variants in ANSWERS.items()}
        if set(ids["yes"]) & set(ids["no"]):
            raise ValueError(f"judge {spec.identity['path']}: its tokenizer cannot tell yes from no by the first token")
        self.yes, self.no = ids["yes"], ids["no"]

    def scores(self, rows: list[dict]) -> list[float | None]:
        """P(yes) per row ({"prompt", "reply", "reference"}), in order."""
        import torch

        from ftassets.lib.core.models import render_chat

        out: list[float | None] = []
        for start in range(0, len(rows), self.spec.batch_size):
            batch = [render_chat(self.tokenizer, [{"role": "user", "content": fill(
                self.spec.prompt_template, r["prompt"], r["reply"], r.get("reference", ""))}], add_generation_prompt=True)
                for r in rows[start:start + self.spec.batch_size]]
            encoded = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                logits = self.model(**encoded).logits[:, -1, :].float()
            pair = torch.cat([logits[:, self.yes], logits[:, self.no]], dim=1).softmax(dim=1)
            out += [round(float(p), 6) for p in pair[:, :len(self.yes)].sum(dim=1)]
        return out


class EndpointJudge:
    def __init__(self, spec: JudgeSpec):
        self.spec, self.endpoint = spec, spec.endpoint
        self.errors: list[str] = []

    def _ask(self, content: str) -> str:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.endpoint.api_key_env, "") if self.endpoint.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = json.dumps({"model": self.endpoint.model, "temperature": 0, "max_tokens": 3,
                           "messages": [{"role": "user", "content": content}]}).encode()
        request = urllib.request.Request(self.endpoint.url.rstrip("/") + "/chat/completions", data=body,
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.endpoint.timeout_s) as response:  # noqa: S310 - declared url
            return json.loads(response.read())["choices"][0]["message"]["content"]

    def scores(self, rows: list[dict]) -> list[float | None]:
        out: list[float | None] = []
        for n, r in enumerate(rows):
            try:
                word = self._ask(fill(self.spec.prompt_template, r["prompt"], r["reply"], r.get("reference", "")))
            except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError,
                    http.client.HTTPException) as exc:  # one failed call leaves that reply without a verdict
                self.errors.append(f"row {n}: {type(exc).__name__}: {exc}"[:200])
                out.append(None)
                continue
            first = word.strip().split()[0].strip(".,!:;").lower() if word.strip() else ""
            out.append(1.0 if first == "yes" else 0.0 if first == "no" else None)
            if out[-1] is None:
                self.errors.append(f"row {n}: answer is neither yes nor no")
        return out


def make_judge(spec: JudgeSpec):
    return EndpointJudge(spec) if spec.endpoint is not None else LocalJudge(spec)


def preference(p_a: float | None, p_b: float | None, bar: float) -> str | None:
    """The judge's A / B / tie from the verdicts that gate: the reply it passes (P(yes) >= the task's `min`)
    over the one it fails; both passed or both failed is a tie (no verdict on either reply: none)."""
    if p_a is None or p_b is None:
        return None
    a, b = p_a >= bar, p_b >= bar
    return "tie" if a == b else ("A" if a else "B")


def calibration(judge, spec: JudgeSpec, statistics, pairs: list[dict], grades: dict[str, str],
                bars: dict[str, float]) -> dict:
    """The judge's A / B / tie on graded pairs ({pair_id, task, prompt, reply_a, reply_b, reference}) of the
    judged tasks (`bars`: task -> the judge metric's `min`) against the people's `grades`: kappa and raw
    agreement with intervals (`statistics`: the contract's), and whether kappa's lower bound reaches
    `spec.min_kappa` on at least `spec.min_pairs` answered pairs."""
    from ftassets.lib.core.stats import agreement

    pairs = sorted((p for p in pairs if p["task"] in bars), key=lambda p: p["pair_id"])
    asked = [{"prompt": p["prompt"], "reply": p[side], "reference": p.get("reference", "")}
             for p in pairs for side in ("reply_a", "reply_b")]
    scores = judge.scores(asked)
    calls = [preference(scores[2 * n], scores[2 * n + 1], bars[p["task"]]) for n, p in enumerate(pairs)]
    kept = [(grades[p["pair_id"]], c) for p, c in zip(pairs, calls) if c is not None]
    measured = agreement([h for h, _ in kept], [c for _, c in kept], statistics.confidence, statistics.resamples,
                         statistics.seed)
    low = (measured["kappa_interval"] or [None])[0]
    calibrated = low is not None and len(kept) >= spec.min_pairs and low >= spec.min_kappa
    why = ("no graded pair of a judged task the judge could answer" if measured["kappa"] is None else
           f"kappa {measured['kappa']} [{low}, {measured['kappa_interval'][1]}] "
           f"{'reaches' if calibrated else 'does not reach'} the bar {spec.min_kappa} on {len(kept)} pairs"
           + ("" if len(kept) >= spec.min_pairs else f" (fewer than judge.min_pairs {spec.min_pairs})"))
    return {"status": "calibrated" if calibrated else "uncalibrated", "why": why, **measured,
            "unanswered": len(pairs) - len(kept),
            "confusion": {f"{h}->{c}": sum(1 for x in kept if x == (h, c)) for h in ("A", "B", "tie")
                          for c in ("A", "B", "tie")}}
