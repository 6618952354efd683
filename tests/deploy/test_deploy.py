"""Offline validation of deploy/: Kubernetes manifests, DaskCluster CRD, Helm values, Dockerfile.

* Core Kubernetes resources: ``kubernetes-validate`` with its bundled (offline) strict schemas.
* ``DaskCluster``: jsonschema against the CRD's ``openAPIV3Schema`` shipped in the installed
  ``dask_kubernetes`` package, plus a pruning check (fields the API server would silently drop).
* Helm values: the dask-gateway chart's ``values.schema.yaml`` is not available offline, so the
  values are checked structurally against the chart's documented keys (restated below), and the
  ``extraConfig`` code is executed against the real ``dask_gateway_server`` classes: the option
  menu is parsed for CPU and GPU requests and the result must build a ``KubeClusterConfig``.
* Dockerfile: a structural lint (variants, pinned bases, non-root user, env).
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import pytest
import yaml

import pipeline

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.30"
IMAGE_IN_POD = "/opt/tbcube/"  # WORKDIR of the project inside the image (Dockerfile)


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _manifests() -> list[tuple[str, dict]]:
    return [(f"{p.name}#{i}", d) for p in sorted((DEPLOY / "k8s").glob("*.yaml"))
            for i, d in enumerate(_docs(p))]


# --- core Kubernetes resources ----------------------------------------------------------------
def test_core_resources_validate_against_bundled_strict_schemas():
    kv = pytest.importorskip("kubernetes_validate")
    core = [(n, d) for n, d in _manifests() if "dask.org" not in d["apiVersion"]]
    assert {d["kind"] for _, d in core} >= {"CronJob", "ServiceAccount"}
    for _, doc in core:
        kv.validate(doc, K8S_VERSION, strict=True)  # raises with the failing path
    broken = dict(core[0][1], spec={"schedul": "x"}) if core[0][1]["kind"] == "CronJob" else None
    if broken is not None:  # the validator does reject a typo (strict schemas)
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, K8S_VERSION, strict=True)


# --- DaskCluster against the dask-kubernetes CRD ---------------------------------------------
@functools.cache
def _crd_schema(kind: str) -> dict:
    dk = pytest.importorskip("dask_kubernetes")
    crds = Path(dk.__file__).parent / "operator" / "deployment" / "helm" / \
        "dask-kubernetes-operator" / "crds"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~1 MB of YAML
    for path in sorted(crds.glob("*.yaml")):
        if kind.lower() not in path.read_text()[:400].lower():
            continue
        crd = yaml.load(path.read_text(), Loader=loader)
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v.get("served", True)][:1]
            return {"group": crd["spec"]["group"], "version": version["name"],
                    "schema": version["schema"]["openAPIV3Schema"]}
    raise AssertionError(f"no CRD for {kind} in {crds}")


def _pruned(doc, schema, path="") -> list[str]:
    """Paths of fields the API server would prune (not declared in the structural schema)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out = []
    if isinstance(doc, dict) and schema.get("type", "object") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in doc.items():
            if props is not None and k in props:
                out += _pruned(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += _pruned(v, extra, f"{path}.{k}")
            elif props is not None and extra is not True:
                out.append(f"{path}.{k}")
    elif isinstance(doc, list) and "items" in schema:
        for i, v in enumerate(doc):
            out += _pruned(v, schema["items"], f"{path}[{i}]")
    return out


def _check_dask_resource(doc: dict) -> list[str]:
    import jsonschema

    crd = _crd_schema(doc["kind"])
    assert doc["apiVersion"] == f"{crd['group']}/{crd['version']}"
    # OpenAPI v3 schemas are close to JSON Schema draft 4 (nullable/x-kubernetes-* are ignored).
    jsonschema.Draft4Validator(crd["schema"]).validate(doc)
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    return _pruned(body, crd["schema"])


def test_daskcluster_gpu_manifest_matches_the_crd():
    (doc,) = _docs(DEPLOY / "k8s" / "daskcluster-gpu.yaml")
    assert doc["kind"] == "DaskCluster"
    assert _check_dask_resource(doc) == []
    (worker,) = doc["spec"]["worker"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert 0 < float(env["XLA_PYTHON_CLIENT_MEM_FRACTION"]) <= 1
    args = worker["args"]
    assert args[args.index("--nthreads") + 1] == "1"  # one JAX process per GPU, one thread
    assert worker["image"].endswith(f":{pipeline.__version__}-cuda")


def test_crd_check_catches_typos_and_wrong_types():
    import copy

    import jsonschema

    (doc,) = _docs(DEPLOY / "k8s" / "daskcluster-gpu.yaml")
    typo = copy.deepcopy(doc)
    typo["spec"]["worker"]["replica"] = typo["spec"]["worker"].pop("replicas")
    assert _check_dask_resource(typo) == [".spec.worker.replica"]
    wrong = copy.deepcopy(doc)
    wrong["spec"]["worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        _check_dask_resource(wrong)


# --- CronJobs -------------------------------------------------------------------------------
def _cronjobs() -> list[tuple[str, dict]]:
    return [(n, d) for n, d in _manifests() if d["kind"] == "CronJob"]


def test_every_cronjob_forbids_concurrency_and_runs_a_valid_reprocess_command():
    from pipeline.cli.reprocess import reprocess
    from pipeline.config import ReprocessJob, load_config

    jobs = _cronjobs()
    assert len(jobs) >= 3
    for name, doc in jobs:
        assert doc["spec"]["concurrencyPolicy"] == "Forbid", name
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["restartPolicy"] in ("Never", "OnFailure")
        (container,) = pod["containers"]
        command = container["command"] + container.get("args", [])
        assert command[:2] == ["tbcube", "reprocess"], name
        ctx = reprocess.make_context("reprocess", list(command[2:]))  # click parses it
        config = ctx.params["config_path"]
        assert config.startswith(IMAGE_IN_POD), name
        local = REPO / config[len(IMAGE_IN_POD):]
        assert local.is_file(), f"{name}: {local} missing"
        job = load_config(local, ReprocessJob)
        assert job.parts >= 1 and job.lock_stale_after_s > 0
        assert container["image"].endswith(f":{pipeline.__version__}-cpu"), name
        assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("config", ["reprocess-npr-demo.yaml", "reprocess-ft.yaml",
                                    "reprocess-sm.yaml"])
def test_scheduled_products_have_job_kinds(config):
    from pipeline.config import ReprocessJob, load_config
    from pipeline.runner import jobs

    cfg = load_config(DEPLOY / "configs" / config, ReprocessJob)
    for pid in cfg.products:
        job = jobs.make_job(pid, cfg, storage_options={"anon": True})  # no I/O yet
        assert job.product_id == pid
        members = ("template", "partition", "build_part", "inputs", "models", "settings",
                   "chunks", "spec", "partition_dim")
        fields = getattr(job, "__dataclass_fields__", {})
        assert all(hasattr(type(job), m) or m in fields for m in members)  # protocol, no I/O


# --- Helm values (dask-gateway chart) ---------------------------------------------------------
# Keys documented by the dask-gateway chart's values.yaml (the subset a deployment sets);
# "*" marks free-form mappings.
_DOCUMENTED = {
    "gateway": {
        "replicas": None, "annotations": "*", "resources": "*", "prefix": None,
        "loglevel": None, "image": {"name": None, "tag": None, "pullPolicy": None},
        "imagePullSecrets": None, "service": {"annotations": "*"},
        "auth": {"type": None, "simple": {"password": None}, "kerberos": {"keytab": None},
                 "jupyterhub": {"apiToken": None, "apiUrl": None},
                 "custom": {"class": None, "config": "*"}},
        "livenessProbe": "*", "readinessProbe": "*",
        "backend": {
            "image": {"name": None, "tag": None, "pullPolicy": None}, "namespace": None,
            "environment": "*",
            "scheduler": {"extraPodConfig": "*", "extraContainerConfig": "*",
                          "cores": {"request": None, "limit": None},
                          "memory": {"request": None, "limit": None}},
            "worker": {"extraPodConfig": "*", "extraContainerConfig": "*",
                       "cores": {"request": None, "limit": None},
                       "memory": {"request": None, "limit": None}, "threads": None},
        },
        "nodeSelector": "*", "affinity": "*", "tolerations": None, "extraConfig": "*",
    },
    "controller": {"enabled": None, "annotations": "*", "resources": "*",
                   "imagePullSecrets": None, "loglevel": None, "completedClusterMaxAge": None,
                   "completedClusterCleanupPeriod": None, "backoffBaseDelay": None,
                   "backoffMaxDelay": None, "k8sApiRateLimit": None,
                   "k8sApiRateLimitBurst": None,
                   "image": {"name": None, "tag": None, "pullPolicy": None},
                   "nodeSelector": "*", "affinity": "*", "tolerations": None},
    "traefik": {"replicas": None, "annotations": "*", "resources": "*",
                "image": {"name": None, "tag": None, "pullPolicy": None},
                "additionalArguments": None, "loglevel": None, "dashboard": None,
                "service": {"type": None, "annotations": "*", "spec": "*",
                            "ports": {"web": {"port": None, "nodePort": None},
                                      "tcp": {"port": None, "nodePort": None}}},
                "nodeSelector": "*", "affinity": "*", "tolerations": None},
    "rbac": {"enabled": None, "controller": {"serviceAccountName": None},
             "gateway": {"serviceAccountName": None}, "traefik": {"serviceAccountName": None}},
    "global": "*",
}


def _undocumented(values, allowed, path="") -> list[str]:
    if allowed == "*" or allowed is None:
        return [] if allowed == "*" or not isinstance(values, dict) else [path]
    if not isinstance(values, dict):
        return [path]
    out = []
    for k, v in values.items():
        if k not in allowed:
            out.append(f"{path}.{k}")
        else:
            out += _undocumented(v, allowed[k], f"{path}.{k}")
    return out


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "gateway" / "values.yaml").read_text())


def _server_options():
    """Execute the values' extraConfig like dask_gateway_config.py does; return the Options."""
    pytest.importorskip("dask_gateway_server")
    from traitlets.config import Config

    c = Config()
    for _, code in sorted(_values()["gateway"]["extraConfig"].items()):
        exec(compile(code, "extraConfig", "exec"), {"c": c})
    return c


def test_helm_values_use_only_documented_keys():
    values = _values()
    assert _undocumented(values, _DOCUMENTED) == []
    assert _undocumented({"gateway": {"backend": {"wrker": {}}}}, _DOCUMENTED) == [
        ".gateway.backend.wrker"]  # the check does catch typos
    backend = values["gateway"]["backend"]
    assert backend["image"]["tag"] == f"{pipeline.__version__}-cpu"
    assert backend["worker"]["threads"] == 1
    assert backend["environment"]["MALLOC_ARENA_MAX"] == "1"


@pytest.mark.parametrize("gpu", [False, True])
def test_helm_option_menu_builds_a_kube_cluster_config(gpu):
    import types

    from dask_gateway.options import Options as ClientOptions
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig

    from pipeline.config import ClusterSection
    from pipeline.runner import cluster

    c = _server_options()
    menu = c.Backend.cluster_options
    names = [f.field for f in menu.fields]
    assert names == ["worker_cores", "worker_memory", "gpu", "image"]
    assert set(names) <= set(ClusterSection.model_fields)
    # What the tbcube client sends for a ClusterSection, through the client-side Options class.
    section = ClusterSection(kind="gateway", address="https://gw", worker_cores=4,
                             worker_memory="32GiB" if gpu else "8GiB", gpu=gpu)
    fake_gateway = types.SimpleNamespace(
        cluster_options=lambda: ClientOptions._from_spec(menu.get_specification()))
    request = dict(cluster._cluster_options(fake_gateway, section))
    parsed = menu.parse_options(request)
    config = menu.get_configuration(parsed, types.SimpleNamespace(name="alice"))
    kube = KubeClusterConfig(**config)  # every key is a real trait with a valid value
    assert kube.worker_cores == 4 and kube.worker_threads == 1
    assert kube.worker_memory == (32 if gpu else 8) * 2**30
    values = _values()["gateway"]["backend"]["image"]
    variant = "cuda" if gpu else "cpu"
    assert kube.image == f"{values['name']}:{pipeline.__version__}-{variant}"
    limits = kube.worker_extra_container_config.get("resources", {}).get("limits", {})
    assert (limits.get("nvidia.com/gpu") == 1) is gpu
    assert (kube.environment.get("XLA_PYTHON_CLIENT_PREALLOCATE") == "false") is gpu
    assert c.KubeClusterConfig.worker_cmd == ["python", "-m", "distributed.cli.dask_worker"]


# --- Dockerfile --------------------------------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    lines, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        buf += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            instr, _, rest = buf.strip().partition(" ")
            lines.append((instr.upper(), rest.strip()))
            buf = ""
    return lines


def test_dockerfile_structure():
    instrs = _dockerfile()
    args = {}
    for instr, rest in instrs:
        if instr == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args.setdefault(k, v)
    assert args["VARIANT"] == "cpu"
    stages, froms = set(), []
    for instr, rest in instrs:
        if instr == "FROM":
            parts = rest.split()
            image = parts[0]
            froms.append(image)
            if "AS" in [p.upper() for p in parts]:
                stages.add(parts[-1])
    assert {"variant-cpu", "variant-cuda", "final"} <= stages
    assert "variant-${VARIANT}" in froms  # the build arg selects the variant
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if resolved in stages or resolved.startswith("variant-"):
            continue
        name, _, tag = resolved.rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d", tag), image
    users = [rest for instr, rest in instrs if instr == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = " ".join(rest for instr, rest in instrs if instr == "ENV")
    for var in ("MALLOC_TRIM_THRESHOLD_=68719476736", "MALLOC_ARENA_MAX=1", "MALLOC_MMAP_MAX_=0",
                "XLA_PYTHON_CLIENT_PREALLOCATE=false", "XLA_PYTHON_CLIENT_MEM_FRACTION="):
        assert var in env, var
    for instr, rest in instrs:
        if instr == "COPY":
            for src in shlex.split(rest)[:-1]:
                if not src.startswith("--"):
                    assert (REPO / src).exists(), f"COPY source {src} missing"


def test_lock_file_pins_the_tested_environment():
    from importlib.metadata import version

    pins = {}
    for line in (DEPLOY / "docker" / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, ver = line.partition("==")
            assert sep, f"unpinned line {line!r}"
            pins[name.lower().replace("_", "-")] = ver
    for pkg in ("dask", "distributed", "xarray", "zarr", "jax", "jaxlib", "dask-gateway",
                "numpy", "pydantic"):
        assert pins[pkg] == version(pkg), (
            f"{pkg}: requirements.lock pins {pins[pkg]}, the test venv has {version(pkg)}; "
            "the Makefile installs with -c requirements.lock, so re-run make install")
    jax_arg = [r for i, r in _dockerfile() if i == "ARG" and r.startswith("JAX_VERSION=")]
    assert jax_arg == [f"JAX_VERSION={version('jax')}"]
