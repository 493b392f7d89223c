"""Resources: everything outside the process goes through these, bound once here."""


import functools
import os
import sys
from pathlib import Path

import dagster as dg
from pydantic import Field

from ftassets.defs.curation.settings import CurationSettings, load_curation_settings
from ftassets.lib.core import object_store
from ftassets.lib.core.catalog import Catalog
from ftassets.lib.core.contract import EvalContract
from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import remove_stale_temp, sha256_file
from ftassets.lib.curation.pii import DEFAULT_SPACY_MODEL
from ftassets.lib.evaluation.review import graded_file

REPO_DATA = Path(__file__).resolve().parents[3] / "data"


def default_data_dir() -> str:
    return os.environ.get("FTASSETS_DATA_DIR", str(REPO_DATA))


def default_artifacts_dir() -> str:
    return os.environ.get("FTASSETS_ARTIFACTS_DIR", str(Path(default_data_dir()) / "artifacts"))


INSTANCE_CLAIM = "ftassets/data_dir"  # key in the instance's own key-value store (SQLite or PostgreSQL)


def claim_instance(instance: dg.DagsterInstance, data_dir: str, repoint: bool = False) -> str | None:
    """One instance serves one data folder: its lineage, source partitions and sensor cursors describe
    that folder, and a second folder's runs would interleave with them silently. The first run (or
    `ftassets run`) records the folder in the instance's storage; a run reading another is refused.
    `repoint` (`ftassets claim`) records the new folder on purpose. Returns the folder served before."""
    wanted = str(Path(data_dir).resolve())
    served = instance.run_storage.get_cursor_values({INSTANCE_CLAIM}).get(INSTANCE_CLAIM)
    if served is None or repoint:
        instance.run_storage.set_cursor_values({INSTANCE_CLAIM: wanted})
    elif served != wanted:
        raise GovernanceError(
            f"this Dagster instance ({instance.root_directory}) serves the data folder {served}, and this run reads "
            f"{wanted}: two folders would share one lineage. Give each data folder its own DAGSTER_HOME (as "
            f"examples/shop_routing does), or re-point this instance on purpose with `ftassets claim {wanted}`")
    return served


class ArtifactStore(dg.ConfigurableResource):
    """Where inputs are read (data_dir) and artifacts are written (artifacts_dir). With `remote_url`
    (any fsspec URL: s3://bucket/ftassets, gs://..., file:///shared/ftassets) the local folder is a
    working copy of an object store of record: every published artifact is fetched (and verified)
    when a run or step starts, and every artifact that changed locally is published when it ends, so
    run pods and GPU nodes on different machines share one set of artifacts."""

    data_dir: str
    artifacts_dir: str
    remote_url: str = ""
    reviews_dir: str = "reviews"  # graded blind-review packets are dropped here, relative to the data dir

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.instance is not None:
            claim_instance(context.instance, self.data_dir)
        removed = remove_stale_temp(Path(self.artifacts_dir))  # left by a killed run: never read, never published
        if context.log and removed:
            context.log.info(f"removed {len(removed)} temporary file(s) of a run that died")
        if self.remote_url:
            fetched = self.sync_down()
            if context.log and fetched:
                context.log.info(f"fetched from {self.remote_url}: {', '.join(fetched)}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self.remote_url:
            published = self.sync_up()
            if context.log and published:
                context.log.info(f"published to {self.remote_url}: {', '.join(published)}")

    def _remote(self, name: str) -> str:
        return f"{self.remote_url.rstrip('/')}/{name}"

    def sync_down(self) -> list[str]:
        """Fetch every published artifact that differs from the local copy; returns their names."""
        return [name for name in object_store.list_artifacts(self.remote_url)
                if object_store.fetch(self._remote(name), Path(self.artifacts_dir) / name)]

    def sync_up(self) -> list[str]:
        """Publish every local artifact folder (not the hidden staging/checkpoint ones) that differs from
        the published copy; returns their names."""
        root = Path(self.artifacts_dir)
        out = []
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            if folder.is_dir() and not folder.name.startswith("."):
                files, remote = object_store.local_manifest(folder), object_store.remote_manifest(self._remote(folder.name))
                if files != remote:
                    object_store.publish(folder, self._remote(folder.name), files, remote or {})
                    out.append(folder.name)
        return out

    def data(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else Path(self.data_dir) / path

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.artifacts_dir)

    def artifact(self, name: str) -> Path:
        """An asset's artifact folder."""
        return self.catalog.folder(name)

    def path(self, asset: str, role: str) -> Path:
        """One of an asset's files, by its role in the artifact catalog."""
        return self.catalog.path(asset, role)

    def records(self, asset: str, role: str) -> list[dict]:
        return self.catalog.records(asset, role)

    def read_json(self, asset: str, role: str):
        return self.catalog.read_json(asset, role)

    def graded_review(self, packet_id: str) -> Path:
        """Where a graded copy of blind review packet `packet_id` is dropped."""
        return graded_file(self.data(self.reviews_dir), packet_id)

    def contract(self) -> EvalContract:
        return self.catalog.contract()

    def checkpoints(self, asset: str) -> Path:
        """Training checkpoints of an asset: kept apart from its staging folder so a killed run can resume."""
        return self.catalog.checkpoints(asset)

    def file_versions(self, paths: list[Path]) -> dict[str, str]:
        return {str(p.relative_to(self.data_dir) if p.is_relative_to(self.data_dir) else p): sha256_file(p)
                for p in paths}


@functools.lru_cache(maxsize=4)
def _scrubber(spacy_model, entities, threshold, operator, allow_list, name_lists, allow_patterns=()):
    from ftassets.lib.curation.pii import PiiScrubber

    return PiiScrubber(spacy_model, entities=entities, score_threshold=threshold, operator=operator,
                       allow_list=allow_list, name_lists=name_lists, allow_patterns=allow_patterns)


class PiiEngine(dg.ConfigurableResource):
    """Presidio with a local spaCy NER package (never downloaded at run time)."""

    spacy_model: str = DEFAULT_SPACY_MODEL

    def scrubber(self, scrub):
        """A (cached) scrubber for a `ScrubConfig`'s detection settings."""
        return _scrubber(self.spacy_model, tuple(scrub.entities), scrub.score_threshold, scrub.operator,
                         tuple(scrub.allow_list), scrub.name_lists, tuple(scrub.allow_patterns))


OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}


PIPES_ENTRY = ["-m", "ftassets.pipes_recipe"]


class TrainingLauncher(dg.ConfigurableResource):
    """Where the training recipes run, always through Dagster Pipes: a local subprocess (default), or
    a Kubernetes pod (`kind: k8s`, dagster-k8s `PipesK8sClient`) on a GPU node. The pod needs an image
    with ftassets installed and the artifacts folder mounted at the same path (a shared volume claim),
    because recipes read and write the paths the asset gives them. Select by env vars (docs/training.md)."""

    kind: str = "subprocess"
    image: str = ""
    namespace: str = "default"
    gpus: int = 0
    cpu: str = ""
    memory: str = ""
    volume_claim: str = ""
    mount_path: str = ""
    kubeconfig: str = ""  # empty: in-cluster config, else ~/.kube/config

    def command(self) -> list[str]:
        return [sys.executable if self.kind == "subprocess" else "python", *PIPES_ENTRY]

    def pod_spec(self) -> dict:
        """The base pod spec handed to PipesK8sClient: GPU limit, requests, the shared artifacts volume."""
        resources = {}
        if self.gpus:
            resources["limits"] = {"nvidia.com/gpu": str(self.gpus)}
        requests = {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v}
        if requests:
            resources["requests"] = requests
        container = {"name": "training", "image": self.image, "resources": resources}
        spec = {"containers": [container], "restart_policy": "Never"}
        if self.volume_claim:
            container["volume_mounts"] = [{"name": "artifacts", "mount_path": self.mount_path}]
            spec["volumes"] = [{"name": "artifacts", "persistent_volume_claim": {"claim_name": self.volume_claim}}]
        return spec

    def launch(self, context: dg.AssetExecutionContext, recipe: str, settings, io) -> dict:
        """Run a recipe through Pipes with its settings object and paths (both sent as their JSON dump);
        returns the metadata the recipe reported."""
        extras = {"recipe": recipe, "settings": settings.model_dump(mode="json"), "io": io.model_dump(mode="json")}
        if self.kind == "subprocess":
            invocation = dg.PipesSubprocessClient(env=OFFLINE_ENV).run(context=context, command=self.command(),
                                                                       extras=extras)
        elif self.kind == "k8s":
            from dagster_k8s import PipesK8sClient

            if not self.image or not self.volume_claim or not self.mount_path:
                raise ValueError("training_launcher kind k8s needs image, volume_claim and mount_path")
            client = PipesK8sClient(kubeconfig_file=self.kubeconfig or None)
            invocation = client.run(context=context, extras=extras, command=self.command(), namespace=self.namespace,
                                    env=OFFLINE_ENV, base_pod_spec=self.pod_spec())
        else:
            raise ValueError(f"training_launcher kind must be subprocess or k8s, got {self.kind!r}")
        return dict(invocation.get_materialize_result().metadata or {})


class ExperimentTracking(dg.ConfigurableResource):
    """Training runs and release decisions logged to MLflow as well (off unless a tracking URI is set)."""

    mlflow_tracking_uri: str = Field("", description="'' (off), 'local' (SQLite under <artifacts>/mlflow) or an "
                                                     "MLflow tracking URI (http://..., sqlite:///..., databricks)")
    experiment: str = Field("ftassets", description="MLflow experiment the runs are recorded in")

    def record(self, context: dg.AssetExecutionContext, store: "ArtifactStore", run) -> dict:
        """Log `run` (a lib.core.tracking.TrackedRun, tagged with the Dagster run and asset); returns metadata
        that links back to it. A tracking failure is a warning: the model and its lineage are in Dagster."""
        import dataclasses

        from ftassets.lib.core import tracking

        uri = tracking.resolve_uri(self.mlflow_tracking_uri, store.catalog.root)
        if uri is None:
            return {}
        shown = tracking.redact_userinfo(uri)
        tags = {"dagster/run_id": context.run_id, "dagster/asset": context.asset_key.to_user_string(), **run.tags}
        local = self.mlflow_tracking_uri.strip() == tracking.LOCAL
        try:
            run_id = tracking.log_run(uri, self.experiment, dataclasses.replace(run, tags=tags),
                                      tracking.local_store(store.catalog.root) / "artifacts" if local else None)
        except Exception as exc:  # an unreachable server must not fail a finished training run
            context.log.warning(f"MLflow tracking at {shown} failed ({type(exc).__name__}); nothing was logged there")
            return {"mlflow": f"failed ({type(exc).__name__})"}
        context.log.info(f"logged to MLflow at {shown}: experiment {self.experiment!r}, run {run_id}")
        return {"mlflow_run_id": run_id, "mlflow_tracking_uri": shown, "mlflow_experiment": self.experiment}


def experiment_tracking() -> ExperimentTracking:
    return ExperimentTracking(mlflow_tracking_uri=os.environ.get("FTASSETS_MLFLOW_TRACKING_URI", ""),
                              experiment=os.environ.get("FTASSETS_MLFLOW_EXPERIMENT", "ftassets"))


def training_launcher() -> TrainingLauncher:
    env = os.environ.get
    return TrainingLauncher(kind=env("FTASSETS_TRAINING_LAUNCHER", "subprocess"), image=env("FTASSETS_K8S_IMAGE", ""),
                            namespace=env("FTASSETS_K8S_NAMESPACE", "default"), gpus=int(env("FTASSETS_K8S_GPUS", "1")),
                            cpu=env("FTASSETS_K8S_CPU", ""), memory=env("FTASSETS_K8S_MEMORY", ""),
                            volume_claim=env("FTASSETS_K8S_VOLUME_CLAIM", ""), mount_path=default_artifacts_dir(),
                            kubeconfig=env("FTASSETS_K8S_KUBECONFIG", ""))


def default_resources() -> dict:
    return {"store": ArtifactStore(data_dir=default_data_dir(), artifacts_dir=default_artifacts_dir(),
                                   remote_url=os.environ.get("FTASSETS_ARTIFACTS_REMOTE", "")),
            "pii": PiiEngine(), "curation": load_curation_settings(default_data_dir()),
            "training_launcher": training_launcher(), "tracking": experiment_tracking()}
