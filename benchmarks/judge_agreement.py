"""What a language model is worth as a judge: its A / B preference against people's on real preference pairs.

The judge (by default the embedded SmolLM2-135M-Instruct base) reads each reply of a pair with the pinned
prompt of the data-folder template (lib/evaluation/judge.py: P(yes) from its first token restricted to
yes / no); the people's choice is the pair's `chosen` reply (../shared/data/preference/dpo_en_demo.json,
single-turn pairs, A/B order shuffled with a seed). Reported, each with Cohen's kappa and raw agreement
with 95% intervals: the judge's verdicts as they gate (the reply passed at P(yes) >= --bar over the one
failed, else a tie: what judge_calibration measures) and, for reference, its ranking (the higher P(yes)).

    .venv/bin/python benchmarks/judge_agreement.py --pairs 100 [--model DIR] [--append-results]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from results import report  # noqa: E402

PAIRS = REPO.parent / "shared/data/preference/dpo_en_demo.json"
PROMPT = REPO / "ftassets/templates/data_folder/governance/judge_prompt.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="", help="judge model folder (default: the embedded base model)")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--chars", type=int, default=1200, help="each reply cut to this many characters")
    parser.add_argument("--bar", type=float, default=0.5, help="the judge metric's min (P(yes) that passes)")
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not PAIRS.is_file():
        sys.exit(f"{PAIRS} not found: the shared data folder must sit beside the repository")

    from ftassets.lib.core.contract import Statistics, load_judge
    from ftassets.lib.core.files import sha256_file
    from ftassets.lib.core.models import embedded_gguf_path, snapshot_from_gguf
    from ftassets.lib.core.stats import agreement
    from ftassets.lib.evaluation.judge import LocalJudge, preference

    model = Path(args.model) if args.model else snapshot_from_gguf(embedded_gguf_path(), Path(tempfile.mkdtemp()) / "base")
    spec = load_judge({"model": str(model), "prompt": str(PROMPT), "batch_size": 4},
                      "benchmark", REPO, sha256_file)
    rng = random.Random(0)
    rows = [r for r in json.loads(PAIRS.read_text()) if len(r["conversations"]) == 1][:args.pairs]
    asked, people = [], []
    for r in rows:
        prompt, chosen, rejected = (r["conversations"][0]["value"][:args.chars], r["chosen"]["value"][:args.chars],
                                    r["rejected"]["value"][:args.chars])
        chosen_first = rng.random() < 0.5
        a, b = (chosen, rejected) if chosen_first else (rejected, chosen)
        asked += [{"prompt": prompt, "reply": a, "reference": "(none given)"},
                  {"prompt": prompt, "reply": b, "reference": "(none given)"}]
        people.append("A" if chosen_first else "B")
    judge = LocalJudge(spec)
    start = time.perf_counter()
    scores = judge.scores(asked)
    seconds = time.perf_counter() - start
    verdicts = [preference(scores[2 * n], scores[2 * n + 1], args.bar) for n in range(len(people))]
    ranking = ["A" if scores[2 * n] > scores[2 * n + 1] else "B" for n in range(len(people))]
    gating, ranked = agreement(people, verdicts, 0.95, 10000, 0), agreement(people, ranking, 0.95, 10000, 0)
    passed = sum(s >= args.bar for s in scores) / len(scores)
    print(json.dumps({"verdicts": gating, "ranking": ranked, "passed_share": round(passed, 3),
                      "ties": sum(v == "tie" for v in verdicts), "seconds": round(seconds, 1)}, indent=1))

    def line(m):
        return (f"kappa {m['kappa']} [{m['kappa_interval'][0]}, {m['kappa_interval'][1]}], raw agreement "
                f"{m['agreement']} [{m['agreement_interval'][0]}, {m['agreement_interval'][1]}]")
    summary = (f"judge agreement ({'embedded SmolLM2-135M-Instruct' if not args.model else model.name}, P(yes) "
               f"first token, template prompt) with people's choice on {len(people)} single-turn dpo_en_demo pairs: "
               f"verdicts at P(yes) >= {args.bar} (as it would gate): {line(gating)}, passes {passed:.0%} of replies, "
               f"{sum(v == 'tie' for v in verdicts)} ties; ranking by P(yes): {line(ranked)} (chance 0.5); "
               f"{seconds:.0f} s for {len(asked)} replies; {time.strftime('%Y-%m-%d')}")
    report(summary, f"python benchmarks/judge_agreement.py --pairs {args.pairs} --append-results", args.append_results)


if __name__ == "__main__":
    main()
