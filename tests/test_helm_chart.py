"""The Helm chart, rendered and checked offline the way a cluster would check it.

Rendering and lint use the real Helm SDK (helm-python-sdk); the RayService is checked against
KubeRay's own CRD schema, core objects and the Ray pod templates against Kubernetes' schemas
(kubernetes-validate), and the embedded serveConfigV2 against Ray Serve's own config models.
No cluster is involved: what a live KubeRay operator would do with it is not tested here.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from ray.serve.config import AutoscalingConfig
from shared_data import SHARED_DATA
from test_deploy_files import DEPLOYMENTS, check_serve_config

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "clipspot"
VALUES_FILES = sorted((CHART / "ci").glob("*.yaml"))
RAYSERVICE_CRD = SHARED_DATA / "k8s" / "ray.io_rayservices.yaml"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "demo", "video"


@pytest.fixture(scope="module")
def chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(chart: helm.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All Kubernetes objects the chart renders for `values` (merged over values.yaml)."""
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in manifests.items():
        if path.endswith(".txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def values_of(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def ray_pod_specs(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pod spec of the head and of each worker group, keyed 'head' / group name."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    specs = {"head": cluster["headGroupSpec"]["template"]["spec"]}
    for group in cluster["workerGroupSpecs"]:
        specs[group["groupName"]] = group["template"]["spec"]
    return specs


def ray_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"].startswith("ray-"))


def serve_config(rayservice: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(rayservice["spec"]["serveConfigV2"])


def serve_deployment(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in config["applications"][0]["deployments"] if d["name"] == name)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container["env"]}


@pytest.fixture(scope="module")
def crd_schema() -> dict[str, Any]:
    if not RAYSERVICE_CRD.exists():
        pytest.skip(f"KubeRay CRD not found at {RAYSERVICE_CRD} (set CLIPSPOT_SHARED_DATA)")
    crd = yaml.safe_load(RAYSERVICE_CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


def test_chart_lints_clean_in_strict_mode() -> None:
    report = helm.lint(CHART, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 1 is "info" (e.g. the icon suggestion); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    "values_file", [None, *VALUES_FILES], ids=lambda p: p.stem if p else "defaults"
)
def test_rendered_objects_validate(
    chart: helm.Chart, crd_schema: dict[str, Any], values_file: Path | None
) -> None:
    objects = render(chart, values_of(values_file) if values_file else None)
    rayservice = only(objects, "RayService")
    jsonschema.validate(rayservice, crd_schema)

    for obj in objects:
        if obj["apiVersion"].startswith(("ray.io/", "monitoring.coreos.com/")):
            continue  # custom resources: no schema in kubernetes-validate
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    # The CRD schema does not forbid unknown fields inside pod templates; Kubernetes' Pod
    # schema does, so check the Ray pods as Pods too.
    for role, spec in ray_pod_specs(rayservice).items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": role}, "spec": spec}
        kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)

    config = serve_config(rayservice)
    check_serve_config(config)
    assert {d["name"] for d in config["applications"][0]["deployments"]} == DEPLOYMENTS

    # Serve's gRPC port is what every Ray container exposes as serve-grpc.
    for spec in ray_pod_specs(rayservice).values():
        ports = {p["name"]: p["containerPort"] for p in ray_container(spec)["ports"]}
        assert ports["serve-grpc"] == config["grpc_options"]["port"]


def test_gpu_values_scale_gpu_spotter_replicas(chart: helm.Chart) -> None:
    values = values_of(CHART / "ci" / "gpu-values.yaml")
    rayservice = only(render(chart, values), "RayService")
    cluster = rayservice["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"

    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu = groups[values.get("gpuWorkers", {}).get("groupName", "gpu")]
    assert gpu["minReplicas"] == 0
    assert gpu["maxReplicas"] == values["gpuWorkers"]["maxReplicas"]
    limits = ray_container(gpu["template"]["spec"])["resources"]["limits"]
    assert limits["nvidia.com/gpu"] >= 1
    assert env_of(ray_container(gpu["template"]["spec"]))["CLIPSPOT_DEVICE"]["value"] == "cuda"

    spotter = serve_deployment(serve_config(rayservice), "TextSpotter")
    wanted = values["serve"]["textSpotter"]
    assert spotter["ray_actor_options"]["num_gpus"] == wanted["numGpus"]
    scaling = AutoscalingConfig(**spotter["autoscaling_config"])
    assert scaling.max_replicas == wanted["autoscaling"]["maxReplicas"]
    assert scaling.target_ongoing_requests == wanted["autoscaling"]["targetOngoingRequests"]
    assert spotter["user_config"]["max_batch_size"] == wanted["batch"]["maxBatchSize"]


@pytest.mark.parametrize("grace", [30, 75, 12.5])
def test_one_drain_grace_for_serve_and_the_pods(chart: helm.Chart, grace: float) -> None:
    """serve.drainGraceS is Serve's graceful_shutdown_timeout_s of every deployment and the
    terminationGracePeriodSeconds of every pod that runs replicas (whole seconds, rounded up:
    the pod is never killed before the replicas' drain ends)."""
    values = {"serve": {"drainGraceS": grace}} if grace != 30 else None
    rayservice = only(render(chart, values), "RayService")
    config = serve_config(rayservice)
    graces = {d["graceful_shutdown_timeout_s"] for d in config["applications"][0]["deployments"]}
    expected = -(-grace // 1)  # ceil
    assert graces == {expected}
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        assert group["template"]["spec"]["terminationGracePeriodSeconds"] == expected


def test_only_the_ingress_and_the_stateless_spotter_are_deployed(chart: helm.Chart) -> None:
    """Stream state lives with the call on StreamIngress (decoding, tracking: a real CPU share,
    no GPU); TextSpotter is stateless and autoscales on frames in flight."""
    values = values_of(CHART / "ci" / "gpu-values.yaml")
    config = serve_config(only(render(chart, values), "RayService"))
    ingress = serve_deployment(config, "StreamIngress")
    assert 0.5 <= ingress["ray_actor_options"]["num_cpus"] <= 2
    assert ingress["ray_actor_options"]["num_gpus"] == 0
    spotter = serve_deployment(config, "TextSpotter")
    assert spotter["ray_actor_options"]["num_gpus"] == 0.5  # a GPU fraction
    assert AutoscalingConfig(**spotter["autoscaling_config"]).target_ongoing_requests > 0
    assert spotter["user_config"] == {"max_batch_size": values["serve"]["textSpotter"]["batch"][
        "maxBatchSize"]}
    rendered = yaml.safe_dump(config)
    for retired in ("FrameDecoder", "TrackAggregator", "batch_wait_timeout_s"):
        assert retired not in rendered


def test_the_reader_value_reaches_every_ray_container(chart: helm.Chart) -> None:
    default = only(render(chart), "RayService")["spec"]["rayClusterConfig"]
    head = default["headGroupSpec"]["template"]["spec"]
    assert "CLIPSPOT_READER" not in env_of(ray_container(head))  # the weights' default reader
    chosen = only(render(chart, {"model": {"reader": "clipspot-ctc"}}), "RayService")
    cluster = chosen["spec"]["rayClusterConfig"]
    specs = [cluster["headGroupSpec"]["template"]["spec"]]
    specs += [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    readers = [env_of(ray_container(spec))["CLIPSPOT_READER"]["value"] for spec in specs]
    assert readers == ["clipspot-ctc"] * len(specs)


def test_cpu_only_values_request_no_gpu(chart: helm.Chart) -> None:
    objects = render(chart, values_of(CHART / "ci" / "cpu-only-values.yaml"))
    rayservice = only(objects, "RayService")
    assert "nvidia.com/gpu" not in yaml.safe_dump(rayservice)
    assert [g["groupName"] for g in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]] == [
        "cpu"
    ]
    spotter = serve_deployment(serve_config(rayservice), "TextSpotter")
    assert spotter["ray_actor_options"]["num_gpus"] == 0


def test_changing_a_value_changes_the_manifest(chart: helm.Chart) -> None:
    before = only(render(chart), "RayService")
    after = only(
        render(
            chart,
            {
                "serve": {"textSpotter": {"autoscaling": {"maxReplicas": 7}}},
                "gpuWorkers": {"maxReplicas": 7},
            },
        ),
        "RayService",
    )
    assert before != after

    def spotter_max(rs: dict[str, Any]) -> int:
        return serve_deployment(serve_config(rs), "TextSpotter")["autoscaling_config"][
            "max_replicas"
        ]

    def gpu_max(rs: dict[str, Any]) -> int:
        groups = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        return next(g for g in groups if g["groupName"] == "gpu")["maxReplicas"]

    assert (spotter_max(before), gpu_max(before)) != (7, 7)
    assert (spotter_max(after), gpu_max(after)) == (7, 7)


def test_bundled_redis_password_reaches_replicas(chart: helm.Chart) -> None:
    objects = render(chart, {"redis": {"password": "s3cretPassw0rd"}})
    secret = only(objects, "Secret")
    assert base64.b64decode(secret["data"]["redis-password"]).decode() == "s3cretPassw0rd"
    service = only(objects, "Service")
    redis = only(objects, "Deployment")
    redis_env = env_of(redis["spec"]["template"]["spec"]["containers"][0])
    assert (
        redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
        == secret["metadata"]["name"]
    )

    rayservice = only(objects, "RayService")
    for role, spec in ray_pod_specs(rayservice).items():
        env = env_of(ray_container(spec))
        ref = env["CLIPSPOT_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], "redis-password"), role
        # Kubernetes expands $(VAR) from variables defined earlier in the same list.
        names = list(env)
        assert names.index("CLIPSPOT_REDIS_PASSWORD") < names.index("CLIPSPOT_REDIS_URL")
        url = env["CLIPSPOT_REDIS_URL"]["value"]
        assert url == f"redis://:$(CLIPSPOT_REDIS_PASSWORD)@{service['metadata']['name']}:6379/0"


def test_generated_redis_password_is_random_and_url_safe(chart: helm.Chart) -> None:
    first, second = (
        base64.b64decode(only(render(chart), "Secret")["data"]["redis-password"]).decode()
        for _ in range(2)
    )
    assert len(first) == 32 and first.isalnum()
    assert first != second  # offline there is no existing Secret for `lookup` to keep


def test_external_redis_comes_from_the_users_secret(chart: helm.Chart) -> None:
    values = values_of(CHART / "ci" / "external-redis-values.yaml")
    objects = render(chart, values)
    assert not [o for o in objects if o["kind"] in ("Deployment", "Secret")]
    rayservice = only(objects, "RayService")
    for spec in ray_pod_specs(rayservice).values():
        ref = env_of(ray_container(spec))["CLIPSPOT_REDIS_URL"]["valueFrom"]["secretKeyRef"]
        external = values["redis"]["external"]
        assert (ref["name"], ref["key"]) == (
            external["existingSecret"],
            external["existingSecretKey"],
        )

    url_objects = render(
        chart, {"redis": {"enabled": False, "external": {"url": "redis://r:6379/1"}}}
    )
    secret = only(url_objects, "Secret")
    assert base64.b64decode(secret["data"]["redis-url"]).decode() == "redis://r:6379/1"


def test_tls_mounts_the_secret_into_a_grpc_proxy(chart: helm.Chart) -> None:
    values = values_of(CHART / "ci" / "tls-values.yaml")
    objects = render(chart, values)
    rayservice = only(objects, "RayService")
    secret_name = values["tls"]["secretName"]
    for role, spec in ray_pod_specs(rayservice).items():
        volumes = {v["name"]: v for v in spec["volumes"]}
        tls_volume = next(
            n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == secret_name
        )
        proxy = next(c for c in spec["containers"] if c["name"] == "grpc-tls-proxy")
        mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
        assert mounts[tls_volume] == "/etc/clipspot/tls", role
        assert proxy["ports"][0]["containerPort"] == 9443
    conf = only(objects, "ConfigMap")["data"]["nginx.conf"]
    assert "ssl_certificate /etc/clipspot/tls/tls.crt;" in conf
    assert "grpc_pass grpc://127.0.0.1:9000;" in conf
    ports = {p["name"]: p["port"] for p in rayservice["spec"]["serveService"]["spec"]["ports"]}
    assert ports["serve-grpc-tls"] == 9443

    plain = only(render(chart), "RayService")
    for spec in ray_pod_specs(plain).values():
        assert not [v for v in spec["volumes"] if "secret" in v]
        assert len(spec["containers"]) == 1


def test_every_container_is_non_root_with_a_read_only_root(chart: helm.Chart) -> None:
    objects = render(chart, values_of(CHART / "ci" / "tls-values.yaml"))
    rayservice = only(objects, "RayService")
    specs = list(ray_pod_specs(rayservice).values())
    specs.append(only(objects, "Deployment")["spec"]["template"]["spec"])  # Redis
    autoscaler = rayservice["spec"]["rayClusterConfig"]["autoscalerOptions"]
    contexts = [autoscaler["securityContext"]]
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        for container in spec["containers"]:
            contexts.append(container["securityContext"])
            assert container["resources"]["requests"]["cpu"]
    for context in contexts:
        assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context.get("runAsUser", 1000) > 0  # the TLS proxy's own non-root user: 101
    assert {"name": "tmp", "mountPath": "/tmp"} in autoscaler["volumeMounts"]


def test_what_ray_and_nginx_write_goes_to_empty_dirs(chart: helm.Chart) -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "\nUSER 1000\n" in dockerfile  # the uid runAsUser names in values.yaml
    rayservice = only(render(chart, values_of(CHART / "ci" / "tls-values.yaml")), "RayService")
    for role, spec in ray_pod_specs(rayservice).items():
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["tmp"]["emptyDir"] == {} and volumes["dshm"]["emptyDir"]["medium"]
        for container in spec["containers"]:  # Ray and the nginx TLS proxy
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/tmp"] == "tmp", (role, container["name"])
        ray = ray_container(spec)
        assert {m["mountPath"] for m in ray["volumeMounts"]} >= {"/tmp", "/dev/shm"}
        assert env_of(ray)["XDG_CACHE_HOME"]["value"].startswith("/tmp/")


def test_external_redis_over_tls_gets_its_ca_mounted(chart: helm.Chart) -> None:
    values = values_of(CHART / "ci" / "external-redis-values.yaml")
    rayservice = only(render(chart, values), "RayService")
    for spec in ray_pod_specs(rayservice).values():
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["redis-ca"]["secret"]["secretName"] == "clipspot-redis-ca"
        mounts = {m["name"]: m for m in ray_container(spec)["volumeMounts"]}
        assert mounts["redis-ca"] == {"name": "redis-ca", "mountPath": "/etc/clipspot/redis-ca",
                                      "readOnly": True}
    for spec in ray_pod_specs(only(render(chart), "RayService")).values():
        assert "redis-ca" not in {v["name"] for v in spec["volumes"]}  # bundled Redis: none


def test_a_token_secret_reaches_the_ingress_as_its_token_file(chart: helm.Chart) -> None:
    """auth.tokenSecret: the Secret mounted read-only on every Ray pod, and build_app's
    token_file pointing into it (StreamIngress then requires `authorization: Bearer`)."""
    values = {"auth": {"tokenSecret": "clipspot-tokens", "tokenSecretKey": "list"}}
    rayservice = only(render(chart, values), "RayService")
    assert serve_config(rayservice)["applications"][0]["args"]["token_file"] == \
        "/etc/clipspot/tokens/list"
    for spec in ray_pod_specs(rayservice).values():
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["clipspot-tokens"]["secret"]["secretName"] == "clipspot-tokens"
        mounts = {m["name"]: m for m in ray_container(spec)["volumeMounts"]}
        assert mounts["clipspot-tokens"]["mountPath"] == "/etc/clipspot/tokens"
        assert mounts["clipspot-tokens"]["readOnly"] is True
    plain = only(render(chart), "RayService")
    assert "token_file" not in serve_config(plain)["applications"][0].get("args", {})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gpuWorkers": {"maxReplicas": "four"}}, "want integer"),
        ({"serve": {"textSpotter": {"maxOngoingRequests": 4}}}, "maxOngoingRequests must be >="),
        ({"redis": {"enabled": False}}, "redis.external.url"),
        ({"tls": {"enabled": True}}, "tls.secretName is required"),
        ({"serve": {"proxyLocation": "Everywhere"}}, "proxyLocation"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    chart: helm.Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
