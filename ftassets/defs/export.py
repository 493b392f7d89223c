"""Export: the released model as GGUF files (f16, q8_0) with an Ollama Modelfile, each file checked
against the evaluated model before it is offered. A failed export never touches the release."""

import dagster as dg

from ftassets.defs.platform.resources import ArtifactStore
from ftassets.defs.release import released_bundle
from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.files import sha256_json
from ftassets.lib.release import export, serving

GROUP = "release"


def _gguf_pre(store: ArtifactStore, model_dir) -> str:
    """llama.cpp's pre-tokenizer name: the base GGUF's when the model's tokenizer is the base's, else default."""
    from ftassets.lib.core.files import sha256_file
    from ftassets.lib.core.models import embedded_gguf_path

    base = store.artifact("base_model") / "tokenizer.json"
    if not base.is_file() or sha256_file(base) != sha256_file(model_dir / "tokenizer.json"):
        return "default"
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(embedded_gguf_path())).fields.get("tokenizer.ggml.pre")
        return field.contents() if field is not None else "default"
    except (FileNotFoundError, ImportError):
        return "default"


@dg.asset(group_name=GROUP, kinds={"gguf"}, deps=["serving_bundle"],
          description="The released model as GGUF (the contract's quants, f16 and q8_0 by default) with its chat "
                      "template and special tokens, and an Ollama Modelfile whose template and parameters come "
                      "from the chat template and the decoding policy. Offered only when gguf_parity passes.")
def gguf_export(store: ArtifactStore) -> dg.MaterializeResult:
    from ftassets.lib.core.models import load_tokenizer

    bundle, manifest, contract = released_bundle(store)
    model_dir = bundle / file_name("serving_bundle", "model")
    quants = contract.exports.gguf.quants
    pre = _gguf_pre(store, model_dir)
    written = {}
    with store.catalog.unit("gguf_export") as catalog:  # every file of the export switches together
        for quant in quants:
            written[quant] = export.write_gguf(model_dir, catalog.path("gguf_export", quant), quant,
                                               manifest["release_name"], pre)
        smallest = min(quants, key=lambda q: written[q]["bytes"])
        modelfile, how = export.ollama_modelfile(load_tokenizer(model_dir), serving.decoding_policy(bundle),
                                                 file_name("gguf_export", smallest))
        if modelfile:
            catalog.write_text("gguf_export", "modelfile", modelfile)
        summary = {"release_name": manifest["release_name"], "merged_weights_sha256": manifest.get("merged_weights_sha256"),
                   "files": written, "pre_tokenizer": pre, "modelfile": {"written": bool(modelfile), "how": how,
                                                                         "gguf": file_name("gguf_export", smallest)}}
        catalog.write_json("gguf_export", "summary", summary)
    return dg.MaterializeResult(metadata={
        "release_name": manifest["release_name"], "files": dg.MetadataValue.json(written),
        "modelfile": how, "path": dg.MetadataValue.path(str(store.artifact("gguf_export")))},
        data_version=dg.DataVersion(sha256_json(summary)[:32]))


@dg.asset_check(asset=gguf_export, blocking=True, additional_deps=["gold_set", "serving_bundle"],
                description="Each GGUF file reloaded by transformers (gguf_file=): the same rendered chat template, "
                            "tokens and EOS as the released model, greedy replies on the gold prompts identical to "
                            "the evaluated model's at the contract's rate, and the gold pass rate within its budget.")
def gguf_parity(store: ArtifactStore) -> dg.AssetCheckResult:
    from ftassets.lib.core.generation import generate_by_task
    from ftassets.lib.core.models import load_tokenizer
    from ftassets.lib.core.scoring import gold_item_passes, schema_tasks

    bundle, manifest, contract = released_bundle(store)
    spec, policy = contract.exports.gguf, serving.decoding_policy(bundle)
    summary = store.read_json("gguf_export", "summary")
    evaluated = {g["id"]: g for g in store.read_json("serving_bundle", "report")["models"][manifest["tuned_model"]]["gold_items"]}
    gold = store.records("gold_set", "gold")
    schemas = schema_tasks(contract.tasks)
    greedy_ids = {g["id"] for g in gold if policy.get(g["task"], policy["default"]).get("temperature", 0.0) == 0}
    tokenizer = load_tokenizer(bundle / file_name("serving_bundle", "model"))
    base_rate = sum(bool(evaluated[g["id"]]["passed"]) for g in gold) / len(gold)
    results, problems = {}, []
    for quant in summary["files"]:
        model, exported_tokenizer = export.load_gguf(store.path("gguf_export", quant))
        template = export.template_parity(tokenizer, exported_tokenizer, [g["messages"] for g in gold])
        replies = generate_by_task(model, exported_tokenizer, [{"task": g["task"], "prompt": g["messages"]} for g in gold], policy)
        same = sum(r == evaluated[g["id"]]["reply"] for g, r in zip(gold, replies) if g["id"] in greedy_ids)
        rate = sum(gold_item_passes(g["rules"], r, schemas)[0] for g, r in zip(gold, replies)) / len(gold)
        agreement = same / len(greedy_ids) if greedy_ids else 1.0
        results[quant] = {"template_problems": template[:5], "greedy_agreement": round(agreement, 4),
                          "greedy_items": len(greedy_ids), "gold_pass_rate": round(rate, 4),
                          "gold_pass_rate_drop": round(base_rate - rate, 4)}
        problems += [f"{quant}: {p}" for p in template[:3]]
        if agreement < spec.min_greedy_agreement:
            problems.append(f"{quant}: greedy agreement {agreement:.3f} < {spec.min_greedy_agreement}")
        if base_rate - rate > spec.max_gold_pass_rate_drop:
            problems.append(f"{quant}: gold pass rate {rate:.3f}, {base_rate - rate:.3f} below the evaluated model "
                            f"(budget {spec.max_gold_pass_rate_drop})")
    return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": min(r["greedy_agreement"] for r in results.values()), "threshold": spec.min_greedy_agreement,
        "evaluated_gold_pass_rate": round(base_rate, 4), "quants": dg.MetadataValue.json(results),
        "problems": dg.MetadataValue.json(problems)})
