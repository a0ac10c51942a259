"""The stand-in through the official Python client (the `kubernetes` package).

Run by tests/python_clients.rs as: python official_client.py KUBECONFIG MANIFEST.yaml...
Every check is an assert; each group that passes prints one `ok <name>` line, which the
Rust test counts. The manifests are what `deployctl render k8s` produces for the fixtures.
"""

import base64
import sys

import yaml
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

kubeconfig, manifest_files = sys.argv[1], sys.argv[2:]
api = config.new_client_from_config(config_file=kubeconfig)
core = client.CoreV1Api(api)
apps = client.AppsV1Api(api)
NS = "py"


def ok(name):
    print("ok", name, flush=True)


def status_of(call, *args, **kwargs):
    """The HTTP status of an ApiException the call raises (None when it succeeds)."""
    try:
        call(*args, **kwargs)
    except ApiException as e:
        return e.status
    return None


version = client.VersionApi(api).get_code()
print(f"version {version.major}.{version.minor}", flush=True)

# Namespaces: list, create, read (with the server's defaults).
assert "default" in [n.metadata.name for n in core.list_namespace().items]
core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
ns = core.read_namespace(NS)
assert ns.status.phase == "Active", ns.status
assert ns.metadata.labels["kubernetes.io/metadata.name"] == NS, ns.metadata.labels
assert status_of(core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=NS))) == 409
ok("namespace")

# ConfigMap: create, read, strategic-merge patch, list by label, replace (and a stale
# replace refused), delete.
meta = client.V1ObjectMeta(name="cfg", labels={"app": "py"})
core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=meta, data={"a": "1"}))
core.create_namespaced_config_map(
    NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="other", labels={"app": "no"}))
)
core.patch_namespaced_config_map("cfg", NS, {"data": {"b": "2"}})
cm = core.read_namespaced_config_map("cfg", NS)
assert cm.data == {"a": "1", "b": "2"}, cm.data
listed = core.list_namespaced_config_map(NS, label_selector="app=py")
assert [i.metadata.name for i in listed.items] == ["cfg"], listed.items
stale = cm.metadata.resource_version
cm.data["c"] = "3"
core.replace_namespaced_config_map("cfg", NS, cm)
cm.metadata.resource_version = stale
assert status_of(core.replace_namespaced_config_map, "cfg", NS, cm) == 409
core.delete_namespaced_config_map("cfg", NS)
assert status_of(core.read_namespaced_config_map, "cfg", NS) == 404
ok("configmap crud")

# Secret: stringData is stored as data, the type defaults to Opaque.
core.create_namespaced_secret(
    NS, client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"token": "hello"})
)
s = core.read_namespaced_secret("s", NS)
assert s.type == "Opaque", s.type
assert s.data == {"token": base64.b64encode(b"hello").decode()}, s.data
assert s.string_data is None
ok("secret defaults")

# Server-side apply (dynamic client, discovery included) of every rendered manifest; an
# unchanged re-apply changes nothing (same resourceVersion and generation).
dyn = dynamic.DynamicClient(api)
kinds = set()
for path in manifest_files:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        ns_name = doc["metadata"].get("namespace")
        if ns_name and status_of(core.read_namespace, ns_name) == 404:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns_name)))
        res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        first = res.server_side_apply(
            body=doc, name=doc["metadata"]["name"], namespace=ns_name, field_manager="deployctl-py"
        )
        again = res.server_side_apply(
            body=doc, name=doc["metadata"]["name"], namespace=ns_name, field_manager="deployctl-py"
        )
        if doc["kind"] != "Deployment":  # the controller writes a Deployment's status meanwhile
            assert again.metadata.resourceVersion == first.metadata.resourceVersion, (path, doc["kind"])
        assert again.metadata.generation == first.metadata.generation
        managers = [m.manager for m in again.metadata.managedFields]
        assert "deployctl-py" in managers, managers
        kinds.add(doc["kind"])
print("applied kinds:", " ".join(sorted(kinds)), flush=True)
ok("server-side apply of rendered manifests")

# A Deployment: applied with quantities as people write them, read back as the server
# keeps them, its rollout watched to completion.
deployment = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "127.0.0.1:5000/web:1",
                        "ports": [{"containerPort": 8080}],
                        "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}, "requests": {"cpu": "0.5"}},
                        "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                    }
                ]
            },
        },
    },
}
deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
deployments.server_side_apply(body=deployment, name="web", namespace=NS, field_manager="py")
d = apps.read_namespaced_deployment("web", NS)
c = d.spec.template.spec.containers[0]
assert c.image_pull_policy == "IfNotPresent", c.image_pull_policy
assert c.termination_message_path == "/dev/termination-log"
assert c.ports[0].protocol == "TCP"
assert c.resources.limits == {"cpu": "1", "memory": "1Gi"}, c.resources.limits
assert c.resources.requests == {"cpu": "500m"}, c.resources.requests
assert c.readiness_probe.period_seconds == 10 and c.readiness_probe.http_get.scheme == "HTTP"
assert d.spec.strategy.rolling_update.max_surge == "25%"
assert d.spec.revision_history_limit == 10 and d.spec.progress_deadline_seconds == 600
assert d.spec.template.spec.restart_policy == "Always"
ok("deployment defaults")

done = False
w = watch.Watch()
for event in w.stream(
    apps.list_namespaced_deployment, NS, field_selector="metadata.name=web", timeout_seconds=30
):
    o = event["object"]
    st = o.status
    if st is None:
        continue
    if (
        (st.observed_generation or 0) >= o.metadata.generation
        and st.updated_replicas == o.spec.replicas
        and st.ready_replicas == o.spec.replicas
        and st.available_replicas == o.spec.replicas
    ):
        done = True
        w.stop()
assert done, "the rollout did not complete within 30 s"
pods = core.list_namespaced_pod(NS, label_selector="app=web").items
assert len(pods) == 2 and all(p.status.phase == "Running" for p in pods), [p.status.phase for p in pods]
assert pods[0].spec.enable_service_links is True
core.read_namespaced_pod_log(pods[0].metadata.name, NS)
ok("watch rollout complete")

# Ownership: another manager's different replicas is a conflict until forced; an unchanged
# re-apply by the first manager keeps the generation.
generation = apps.read_namespaced_deployment("web", NS).metadata.generation
deployments.server_side_apply(body=deployment, name="web", namespace=NS, field_manager="py")
assert apps.read_namespaced_deployment("web", NS).metadata.generation == generation
other = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {"replicas": 3},
}
try:
    deployments.server_side_apply(body=other, name="web", namespace=NS, field_manager="other")
    raise AssertionError("no conflict")
except ApiException as e:
    body = e.body.decode() if isinstance(e.body, bytes) else e.body
    assert e.status == 409 and ".spec.replicas" in body, body
deployments.server_side_apply(
    body=other, name="web", namespace=NS, field_manager="other", force_conflicts=True
)
assert apps.read_namespaced_deployment("web", NS).spec.replicas == 3
ok("apply conflict and force")

# A strategic merge patch of one container's image (what the client sends for a dict
# body) keeps the rest of the container: lists are merged by key.
apps.patch_namespaced_deployment(
    "web", NS, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "127.0.0.1:5000/web:2"}]}}}}
)
c = apps.read_namespaced_deployment("web", NS).spec.template.spec.containers
assert [x.image for x in c] == ["127.0.0.1:5000/web:2"], c
assert c[0].resources.limits == {"cpu": "1", "memory": "1Gi"} and c[0].ports[0].container_port == 8080, c[0]
ok("strategic merge patch")

# Scale subresource, then delete with cascade.
apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 1}})
assert apps.read_namespaced_deployment_scale("web", NS).spec.replicas == 1
apps.delete_namespaced_deployment("web", NS, propagation_policy="Background")
assert status_of(apps.read_namespaced_deployment, "web", NS) == 404
assert apps.list_namespaced_replica_set(NS, label_selector="app=web").items == []
ok("scale and delete")

# A Service gets its cluster IP and defaults.
core.create_namespaced_service(
    NS,
    client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80)]),
    ),
)
svc = core.read_namespaced_service("web", NS)
assert svc.spec.cluster_ip and svc.spec.cluster_i_ps == [svc.spec.cluster_ip], svc.spec
assert svc.spec.type == "ClusterIP" and svc.spec.session_affinity == "None"
assert svc.spec.ports[0].protocol == "TCP" and svc.spec.ports[0].target_port == 80
core.delete_namespace(NS)
assert status_of(core.read_namespace, NS) == 404
ok("service defaults")
