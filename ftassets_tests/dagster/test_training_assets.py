"""Training assets in Dagster: a bad setting fails the run, naming the field, before any process starts."""

from ftassets.lib.core.catalog import Catalog
from ftassets.lib.core.contract import load_contract
from ftassets.lib.training.settings import SftSettings
from ftassets_tests.conftest import DATA, materialize, materialized_keys


def test_bad_sft_setting_fails_the_step_before_launch(tmp_path):
    result = materialize(DATA, tmp_path / "artifacts", {"ops": {"sft_adapter": {"config": {"lora_r": 0}}}},
                         selection="sft_adapter")
    assert not result.success and "sft_adapter" not in materialized_keys(result)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "lora_r=0: must be an integer >= 1" in str(failure.step_failure_data.error)
    assert not (tmp_path / "artifacts" / "sft_adapter").exists()
    assert not (tmp_path / "artifacts" / ".checkpoints").exists()


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: local, user: {token: not-a-secret}}]
contexts: [{name: local, context: {cluster: local, user: local}}]
current-context: local
"""


def test_kubernetes_launch_submits_the_recipe_pod(tmp_path, monkeypatch):
    """The k8s launcher hands PipesK8sClient the pod it would run: recipe entry command, image, GPU
    limit, the shared artifacts volume, offline env, and the Pipes context carrying the recipe config.
    The Kubernetes API call is intercepted (no cluster here): the body it would send is checked."""
    import dagster as dg
    import kubernetes
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, decode_env_var

    from ftassets.definitions import defs
    from ftassets.defs.curation.settings import CurationSettings
    from ftassets.defs.platform.resources import ArtifactStore, ExperimentTracking, PiiEngine, TrainingLauncher

    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    submitted = []

    def create_namespaced_pod(self, namespace, body, **kwargs):
        submitted.append((namespace, kubernetes.client.ApiClient().sanitize_for_serialization(body)))
        raise RuntimeError("intercepted: no cluster in the test")

    monkeypatch.setattr(kubernetes.client.CoreV1Api, "create_namespaced_pod", create_namespaced_pod)
    artifacts = tmp_path / "artifacts"
    contract = load_contract(DATA / "governance/eval_contract.yaml", DATA)  # the asset reads its selection section
    Catalog(artifacts).write_json("eval_contract", "contract", contract.model_dump(mode="json"))
    launcher = TrainingLauncher(kind="k8s", image="registry.example/ftassets:0.1.0", namespace="ml-training",
                                gpus=1, memory="32Gi", volume_claim="ftassets-artifacts", mount_path=str(artifacts),
                                kubeconfig=str(tmp_path / "kubeconfig"))
    result = dg.materialize(list(defs.assets), selection="sft_adapter", raise_on_error=False,
                            resources={"store": ArtifactStore(data_dir=str(tmp_path), artifacts_dir=str(artifacts)),
                                       "pii": PiiEngine(), "curation": CurationSettings(), "training_launcher": launcher,
                                       "tracking": ExperimentTracking()},
                            instance=dg.DagsterInstance.ephemeral())
    assert not result.success and len(submitted) == 1
    namespace, pod = submitted[0]
    container = pod["spec"]["containers"][0]
    assert namespace == "ml-training" and pod["spec"]["restartPolicy"] == "Never"
    assert container["image"] == "registry.example/ftassets:0.1.0"
    assert container["command"] == ["python", "-m", "ftassets.pipes_recipe"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"memory": "32Gi"}}
    assert container["volumeMounts"] == [{"name": "artifacts", "mountPath": str(artifacts)}]
    assert pod["spec"]["volumes"] == [{"name": "artifacts", "persistentVolumeClaim": {"claimName": "ftassets-artifacts"}}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    context = decode_env_var(env[DAGSTER_PIPES_CONTEXT_ENV_VAR])["data"]  # the context travels inline in the env
    assert context["extras"]["recipe"] == "sft"
    assert context["extras"]["io"]["train_file"] == str(Catalog(artifacts).path("data_splits", "train"))
    assert context["extras"]["io"]["checkpoint_dir"] == str(Catalog(artifacts).checkpoints("sft_adapter"))
    assert context["extras"]["io"]["contract_file"] == str(Catalog(artifacts).path("eval_contract", "contract"))
    assert context["extras"]["io"]["task_eval_file"] == str(Catalog(artifacts).path("data_splits", "validation"))
    assert context["extras"]["io"]["gold_file"] is None  # gold_stop is off: training never reads the gold set
    assert SftSettings.model_validate(context["extras"]["settings"]) == SftSettings()  # the typed settings, whole
    assert not (artifacts / "sft_adapter").exists()
