"""The shipped Grafana dashboard queries only metrics the code exports, and compose provisions it.

The helpers here (`dashboard_queries`, `selectors`) are also used by
tests/e2e/test_live_run.py, which checks the names against a real Prometheus.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from soulsai_ray import metric_names as mn
from soulsai_ray.inbound import REASONS

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "soulsai.json"
RAY_PREFIX = "ray_"
"""Ray 2.60 shows every ``ray.util.metrics`` metric with this prefix on its metrics endpoint."""
SOULSGYM_EPISODE_KEYS = (
    mn.episode_metric("boss_hp_final_mean"),
    mn.episode_metric("player_hp_final_mean"),
)
"""Window means of the episode metrics the SoulsGym adapter reports (`envs.soulsgym`), which the
dashboard shows for boss fights."""
REJECTED_KEYS = tuple(mn.rejected(reason) for reason in REASONS)
"""Exported once a batch is rejected for that reason."""


def exported(key: str) -> str:
    """The name a metric key has on Ray's metrics endpoint."""
    return RAY_PREFIX + mn.prometheus_name(key)


def exported_names() -> set[str]:
    """Every fixed metric name of the registry, and the family members above, as Ray shows them."""
    return {exported(key) for key in (*mn.ALL, *SOULSGYM_EPISODE_KEYS, *REJECTED_KEYS)}


PROMQL_WORDS = {
    *("by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"),
    *("and", "or", "unless", "sum", "min", "max", "avg", "count", "topk", "bottomk"),
    *("rate", "irate", "increase", "delta", "deriv", "clamp_min", "clamp_max", "abs"),
    *("avg_over_time", "max_over_time", "min_over_time", "last_over_time", "label_values"),
    *("histogram_quantile", "time", "vector", "scalar"),
}
"""Identifiers that may appear in an expression outside a selector without being metric names."""
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
RUN_MATCHER = ("run", "=~", "$run")


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Panels that show data (rows only group them), including those inside collapsed rows."""
    panels = []
    for panel in dashboard["panels"]:
        panels.extend(panel.get("panels", []))
        if panel["type"] != "row":
            panels.append(panel)
    return panels


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variable queries."""
    exprs = [target["expr"] for panel in data_panels(dashboard) for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The series selectors of ``expr`` as ``(metric name, matchers)``; the name may be ''.

    ``label_values(metric, label)`` counts as a selector of ``metric`` without matchers. Any
    other identifier outside braces that is not a PromQL word or a grouping label is an error.
    """
    found = [(name or "", MATCHER.findall(matchers)) for name, matchers in SELECTOR.findall(expr)]
    rest = SELECTOR.sub(" ", expr)
    rest = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", rest)  # grouping labels
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # range durations
    label_values = re.match(r"\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)", rest)
    if label_values:
        found.append((label_values.group(1), []))
        rest = rest.replace(label_values.group(0), " ")
    stray = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rest)) - PROMQL_WORDS
    assert not stray, f"{expr!r}: bare identifiers {stray} (a metric without a selector?)"
    return found


def metric_names(expr: str) -> set[str]:
    """Names of the metrics ``expr`` reads (a ``__name__=~`` regex counts as itself)."""
    names = set()
    for name, matchers in selectors(expr):
        regexes = [value for label, op, value in matchers if label == "__name__"]
        names.update([name] if name else regexes)
    return names


def test_dashboard_parses_with_a_fixed_uid_and_a_run_variable():
    dashboard = load_dashboard()
    assert dashboard["uid"] == "soulsai"
    assert 36 <= dashboard["schemaVersion"] <= 41
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "run" and variable["type"] == "query"
    assert re.fullmatch(r"label_values\(ray_soulsai_\w+, run\)", variable["query"]["query"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_every_panel_has_targets_filtered_by_run():
    panels = data_panels(load_dashboard())
    assert len(panels) >= 10
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no target"
        for target in panel["targets"]:
            found = selectors(target["expr"])
            assert found, f"{panel['title']!r}: no selector in {target['expr']!r}"
            for name, matchers in found:
                assert RUN_MATCHER in matchers, f"{panel['title']!r}: {name} is not filtered by run"


def test_dashboard_queries_only_metrics_of_the_registry():
    """Every metric the dashboard reads is a name of `soulsai_ray.metric_names` in its Prometheus
    form; a regex (``__name__=~``) must match exactly the members of one family."""
    names = exported_names()
    used = set()
    for expr in dashboard_queries(load_dashboard()):
        for name in metric_names(expr):
            if name in names:
                used.add(name)
                continue
            matched = {n for n in names if re.fullmatch(name, n)}
            rejected = {exported(key) for key in REJECTED_KEYS}
            assert matched == rejected, f"{expr!r} reads {name}, which is not in the registry"
            used |= matched
    system = (mn.PERF_ENV_STEPS_PER_S, mn.DIST_MODEL_LAG_MEAN, mn.ENV_STALLS, mn.DIST_SAMPLES_STALE)
    agent = (mn.EPISODE_RETURN_MEAN, mn.EPISODE_WIN_RATE, *SOULSGYM_EPISODE_KEYS)
    for key in (*system, mn.DIST_NODE_SAMPLES, *agent):
        assert exported(key) in used, f"the dashboard does not show {key}"


def test_every_registry_name_is_known_and_exported_without_clashes():
    assert len(set(mn.ALL)) == len(mn.ALL) and all(mn.is_known(name) for name in mn.ALL)
    gauges = [mn.prometheus_name(name) for name in mn.ALL]
    assert len(set(gauges)) == len(gauges), "two metric names share a Prometheus gauge"
    assert mn.prometheus_name(mn.TRAIN_LOSS) == "soulsai_train_loss"
    assert mn.is_known(mn.rejected("obs")) and mn.is_known(mn.node_samples("ab" * 20))
    assert not mn.is_known("dist/samples_rejected") and not mn.is_known(mn.DIST_REJECTED)


def test_every_fixed_name_is_written_by_the_package():
    """A name of the registry that nothing writes is a stale name (the dashboard may read it)."""
    sources = [p for p in (ROOT / "soulsai_ray").rglob("*.py") if p.name != "metric_names.py"]
    source = "\n".join(p.read_text() for p in sources)
    constants = [n for n in dir(mn) if n.isupper() and getattr(mn, n) in mn.ALL]
    built = (mn.EPISODE, mn.EVAL)  # episode and evaluation statistics are named as they arrive
    unused = [
        n for n in constants if f"mn.{n}" not in source and not getattr(mn, n).startswith(built)
    ]
    assert not unused, f"names nothing writes: {unused}"


def test_node_samples_are_shown_as_a_rate_per_node():
    exprs = dashboard_queries(load_dashboard())
    name = exported(mn.DIST_NODE_SAMPLES)
    (expr,) = [e for e in exprs if name in e]
    assert re.search(rf"rate\({name}\{{[^}}]*\}}\[1m\]\)", expr)
    assert re.search(r"by \([^)]*\bnode\b[^)]*\)", expr)


def test_promql_parsing_catches_bare_and_unknown_names():
    assert metric_names('max by (run) (ray_soulsai_env_errors{run=~"$run"})') == {
        "ray_soulsai_env_errors"
    }
    assert metric_names('rate(x{run=~"$run", node="a"}[1m])') == {"x"}
    assert metric_names("label_values(ray_soulsai_dist_actors, run)") == {"ray_soulsai_dist_actors"}
    try:
        selectors("rate(ray_soulsai_dist_node_samples[1m])")
    except AssertionError:
        pass
    else:
        raise AssertionError("a metric without braces went unnoticed")


def test_datasource_uid_matches_the_provisioned_one():
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus" and source["uid"]
    dashboard = load_dashboard()
    refs = [panel["datasource"] for panel in data_panels(dashboard)]
    refs += [t["datasource"] for panel in data_panels(dashboard) for t in panel["targets"]]
    refs += [variable["datasource"] for variable in dashboard["templating"]["list"]]
    assert refs and all(ref == {"type": "prometheus", "uid": source["uid"]} for ref in refs)


def test_compose_provisions_the_dashboard_next_to_rays():
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v for v in grafana["volumes"]}
    providers_dir = GRAFANA / "provisioning" / "dashboards"
    ours = yaml.safe_load((providers_dir / "soulsai.yml").read_text())["providers"]
    (provider,) = ours
    path = provider["options"]["path"]
    assert mounts.get(path) == f"./grafana/dashboards:{path}:ro"
    assert (ROOT / "docker" / "grafana" / "dashboards" / DASHBOARD.name).is_file()
    assert mounts["/etc/grafana/provisioning"].startswith("./grafana/provisioning:")
    rays = yaml.safe_load((providers_dir / "ray.yml").read_text())["providers"]
    assert rays[0]["options"]["path"].startswith("/tmp/ray/session_latest/")
