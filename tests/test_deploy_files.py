"""deploy/serve.yaml and deploy/Dockerfile, checked against Ray's config models and the repo.

The image cannot be built here (no Docker, no network), so the Dockerfile is checked for
what can go wrong without building: every path it copies exists, its entry point is the
project's console script, and its base image carries the pinned Ray and Python.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import (
    DeploymentSchema,
    RayActorOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
    gRPCOptionsSchema,
)

ROOT = Path(__file__).resolve().parents[1]
SERVE_YAML = ROOT / "deploy" / "serve.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CHART_VALUES = ROOT / "helm" / "clipspot" / "values.yaml"
DEPLOYMENTS = {"StreamIngress", "TextSpotter"}  # services/ray_app.py builds exactly these


def assert_known_keys(section: dict[str, Any], model: type, where: str) -> None:
    # Ray's pydantic models silently drop unknown keys (a typo like `num_gpuz` would pass
    # validation and be ignored at deploy time), so check the keys against the model's fields.
    unknown = set(section) - set(model.model_fields)
    assert not unknown, f"{where}: unknown keys {sorted(unknown)} for {model.__name__}"


def check_serve_config(config: dict[str, Any]) -> None:
    """Validate a Serve config (serve.yaml or the chart's serveConfigV2) the strict way."""
    ServeDeploySchema.model_validate(config)
    assert_known_keys(config, ServeDeploySchema, "top level")
    assert_known_keys(config["grpc_options"], gRPCOptionsSchema, "grpc_options")
    (app,) = config["applications"]
    assert_known_keys(app, ServeApplicationSchema, "application")
    assert app["route_prefix"].startswith("/"), "Serve routes no gRPC to an app without a prefix"
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == DEPLOYMENTS
    for name, deployment in deployments.items():
        assert_known_keys(deployment, DeploymentSchema, name)
        assert_known_keys(deployment["ray_actor_options"], RayActorOptionsSchema, name)
        if "autoscaling_config" in deployment:
            assert_known_keys(deployment["autoscaling_config"], AutoscalingConfig, name)
            scaling = AutoscalingConfig(**deployment["autoscaling_config"])
            assert scaling.min_replicas <= scaling.max_replicas, name
        else:
            assert isinstance(deployment["num_replicas"], int), name
    # The model is stateless: it autoscales on frames in flight (GPU fractions allowed).
    spotter = deployments["TextSpotter"]
    assert AutoscalingConfig(**spotter["autoscaling_config"]).target_ongoing_requests > 0
    assert spotter["ray_actor_options"]["num_gpus"] >= 0
    # What TextSpotter.reconfigure reads; the batcher has no wait to configure.
    assert set(spotter["user_config"]) == {"max_batch_size"}
    assert spotter["max_ongoing_requests"] >= spotter["user_config"]["max_batch_size"]
    # The ingress decodes, follows motion and tracks every stream it holds: a real CPU share.
    ingress = deployments["StreamIngress"]
    assert 0.5 <= ingress["ray_actor_options"]["num_cpus"] <= 2
    assert ingress["ray_actor_options"].get("num_gpus", 0) == 0
    # One drain grace for every deployment.
    graces = {d["graceful_shutdown_timeout_s"] for d in deployments.values()}
    assert len(graces) == 1, f"graceful_shutdown_timeout_s differs between deployments: {graces}"


def test_serve_yaml_validates_with_rays_schema() -> None:
    check_serve_config(yaml.safe_load(SERVE_YAML.read_text()))


def test_serve_yaml_agrees_with_the_chart_defaults() -> None:
    # The chart and the local config must name the same app, stubs and gRPC port.
    config = yaml.safe_load(SERVE_YAML.read_text())
    serve = yaml.safe_load(CHART_VALUES.read_text())["serve"]
    app = config["applications"][0]
    assert app["import_path"] == serve["importPath"]
    assert app["route_prefix"] == serve["routePrefix"]
    assert config["grpc_options"]["port"] == serve["grpcPort"] == 9000
    assert config["grpc_options"]["grpc_servicer_functions"] == serve["grpcServicerFunctions"]


def test_build_app_builds_what_the_configs_name() -> None:
    # The Serve configs override deployments by name: they must be the ones build_app makes,
    # with the defaults the configs rely on.
    from services.ray_app import build_app

    app = build_app({"spotter_replicas": 2, "ingress_cpus": 0.5, "num_gpus": 0.5})
    ingress = app._bound_deployment
    spotter_app, runner = ingress.init_args
    spotter = spotter_app._bound_deployment
    assert (runner.detect_every, runner.adaptive) == (5, True)  # streams' default mode
    assert {ingress.name, spotter.name} == DEPLOYMENTS
    assert ingress.ray_actor_options["num_cpus"] == 0.5
    assert spotter.ray_actor_options["num_gpus"] == 0.5
    assert spotter.num_replicas == 2
    assert spotter.user_config == {"max_batch_size": 8}


def test_build_app_passes_the_streams_default_mode_and_max_side() -> None:
    from services.ray_app import build_app

    app = build_app({"every_frame": True, "max_side": 640})
    _, runner = app._bound_deployment.init_args
    assert (runner.detect_every, runner.read_changes_only) == (1, False)
    spotter = app._bound_deployment.init_args[0]._bound_deployment
    assert spotter.ray_actor_options["runtime_env"]["env_vars"]["CLIPSPOT_MAX_SIDE"] == "640"


def test_build_app_refuses_unknown_and_retired_keys() -> None:
    from services.ray_app import build_app

    for retired in ("decoder_replicas", "aggregator_replicas", "replica_cpus",
                    "batch_wait_timeout_s"):
        with pytest.raises(ValueError, match=retired):
            build_app({retired: 1})


def test_a_typo_in_a_serve_config_is_caught() -> None:
    config = yaml.safe_load(SERVE_YAML.read_text())
    spotter = next(
        d for d in config["applications"][0]["deployments"] if d["name"] == "TextSpotter"
    )
    spotter["ray_actor_options"]["num_gpuz"] = 1
    ServeDeploySchema.model_validate(config)  # Ray itself lets it through...
    try:
        check_serve_config(config)
    except AssertionError as err:
        assert "num_gpuz" in str(err)
    else:
        raise AssertionError("check_serve_config accepted num_gpuz")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def test_every_path_the_dockerfile_copies_exists() -> None:
    copies = [args for instruction, args in dockerfile_instructions() if instruction == "COPY"]
    assert copies, "the Dockerfile copies nothing"
    sources = []
    for args in copies:
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources.extend(words[:-1])
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"deploy/Dockerfile copies {source}, which is not in the repo"
        if source.endswith("/"):
            assert path.is_dir(), source
    # The image must carry the package, the stubs inside it, and the default weights.
    assert {"pipeline/", "services/", "weights/", "pyproject.toml"} <= set(sources)


def test_dockerfile_entry_point_is_the_console_script() -> None:
    instructions = dict(dockerfile_instructions())
    entrypoint = json.loads(instructions["ENTRYPOINT"])
    command = json.loads(instructions["CMD"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["clipspot"]
    assert entrypoint[0] in scripts
    module_name, _, attr = scripts[entrypoint[0]].partition(":")
    cli = importlib.import_module(module_name)
    assert callable(getattr(cli, attr))
    # The default command must be a real subcommand of that script.
    assert command[0] in cli.SUBCOMMANDS
    assert command == ["serve", "--ray"]


def test_dockerfile_base_image_matches_the_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ray_pin = next(d for d in project["dependencies"] if d.startswith("ray[serve]=="))
    ray_version = ray_pin.split("==")[1]
    base = next(
        args
        for instruction, args in dockerfile_instructions()
        if instruction == "ARG" and args.startswith("BASE_IMAGE=")
    )
    assert base.startswith(f"BASE_IMAGE=rayproject/ray:{ray_version}-py311-")
    assert project["requires-python"].startswith(">=3.11,<3.12")
    chart_values = yaml.safe_load(CHART_VALUES.read_text())
    assert chart_values["rayVersion"] == ray_version
