"""Kubernetes checks of deploy/k8s for tests/tests/deploy_kubernetes.rs.

Renders every overlay under deploy/k8s/overlays with `kubectl kustomize`
three ways — as shipped, with the components its kustomization.yaml offers
as a commented `# components:` block (what a user gets by uncommenting it),
and its `agent/` alone (an agent in the region's own cluster) — and checks
the output with real parsers: `kubernetes-validate --strict` for built-in
kinds, a JSON Schema of the fields used for the CRDs (prometheus-operator,
cert-manager). The overlays rendered as shipped are then taken together as
one namespace (what applying every overlay there gives) and checked across
objects: selectors, ports, volumes, NetworkPolicies; the containers' files
are laid out from the ConfigMaps and from MATERIAL_DIR/<secret>/<key> so the
real binaries can start on them. Prints one JSON object:
`{"problems": [...], ...facts for the Rust test}`.

    k8s_check.py REPO OUT_DIR MATERIAL_DIR KUBECTL

MATERIAL_DIR `-` skips the Secret material (a first pass reading which
Secrets and keys the pods mount).
"""

import json
import os
import re
import subprocess
import sys

import yaml

from deploy_check import port_of, problem, problems, rewrite_paths
from k8s_schemas import CRD_SCHEMAS

# Secret keys cert-manager writes; the TLS Secrets use them whatever made them.
CERT_MANAGER_KEYS = {"tls.crt", "tls.key", "ca.crt"}


def selector_matches(selector, labels):
    """A Kubernetes label selector against a label set (`{}` selects all)."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def canonical(doc):
    return json.dumps(doc, sort_keys=True)


# ------------------------------------------------------------ rendering

def render(kubectl, path, what):
    out = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if out.returncode != 0:
        problem("kubectl kustomize %s failed: %s" % (what, out.stderr.strip()))
        return []
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def offered_components(overlay_dir):
    """The paths of the commented `# components:` block of an overlay's
    kustomization.yaml, relative to the overlay."""
    lines = open(os.path.join(overlay_dir, "kustomization.yaml")).read().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^#\s*components:\s*$", line):
            paths = []
            for more in lines[i + 1:]:
                m = re.match(r"^#\s+-\s+(\S+)", more)
                if not m:
                    break
                paths.append(m.group(1))
            return paths
    return []


def render_with_components(kubectl, overlay_dir, components, out_dir, name):
    """The overlay plus its offered components, through a kustomization in
    OUT_DIR (kustomize takes only relative paths) instead of an edited copy."""
    wrap = os.path.join(out_dir, "with-components", name)
    os.makedirs(wrap, exist_ok=True)
    k = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
         "resources": [os.path.relpath(overlay_dir, wrap)],
         "components": [os.path.relpath(os.path.join(overlay_dir, c), wrap) for c in components]}
    with open(os.path.join(wrap, "kustomization.yaml"), "w") as f:
        yaml.safe_dump(k, f)
    return render(kubectl, wrap, "%s with components %s" % (name, components))


def validate(docs, where, seen, validated, crd_validated):
    import jsonschema
    import kubernetes_validate

    for d in docs:
        key = canonical(d)
        if key in seen:
            continue
        seen.add(key)
        what = "%s %s/%s" % (where, d.get("kind"), d.get("metadata", {}).get("name"))
        if "namespace" in d.get("metadata", {}):
            problem("k8s %s sets a namespace (the manifests are namespace-agnostic)" % what)
        if d.get("kind") in CRD_SCHEMAS:
            for e in sorted(jsonschema.Draft202012Validator(CRD_SCHEMAS[d["kind"]]).iter_errors(d), key=str):
                problem("k8s %s: %s at %s" % (what, e.message, "/".join(map(str, e.absolute_path))))
            crd_validated.append(what)
            continue
        try:
            kubernetes_validate.validate(d, kubernetes_validate.latest_version(), strict=True)
            validated.append(what)
        except kubernetes_validate.ValidationError as e:
            problem("k8s %s: %s at %s" % (what, e.message, "/".join(map(str, e.path))))
        except kubernetes_validate.utils.SchemaNotFoundError as e:
            problem("k8s %s: no schema: %s" % (what, e))


def index(docs):
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def expect_subset(small, big, what):
    """Every object of `small` is in `big`, unchanged."""
    b = index(big)
    for key, d in index(small).items():
        if key not in b:
            problem("k8s %s: %s/%s is missing" % (what, key[0], key[1]))
        elif canonical(b[key]) != canonical(d):
            problem("k8s %s: %s/%s differs" % (what, key[0], key[1]))


# ------------------------------------------------------------ workloads

def lay_out(name, pod, claims, c, configmaps, placeholders, material, root):
    """Writes the files container `c` sees under root (`claims`: the names
    of the pod's volumeClaimTemplates); returns (container path -> host
    path, container path -> volume kind, container path -> Secret name)."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mapping, kinds, secret_of = {}, {}, {}
    for vm in c.get("volumeMounts", []):
        target = os.path.join(root, vm["mountPath"].lstrip("/"))
        v = volumes.get(vm["name"])
        if vm["name"] in claims:
            # A volumeClaimTemplate: the pod's own PersistentVolumeClaim.
            os.makedirs(target, exist_ok=True)
            mapping[vm["mountPath"]], kinds[vm["mountPath"]] = target, "persistentVolumeClaim"
            continue
        if v is None:
            problem("k8s %s/%s: mount of undefined volume %s" % (name, c["name"], vm["name"]))
            continue
        files = {}
        if "configMap" in v:
            cm = configmaps.get(v["configMap"]["name"])
            if cm is None:
                problem("k8s %s: ConfigMap %s is not in the manifests" % (name, v["configMap"]["name"]))
                continue
            files, kind = cm["data"], "configMap"
        elif "secret" in v:
            secret, kind = v["secret"]["secretName"], "secret"
            keys = placeholders.get(secret)
            if keys is None and not v["secret"].get("optional"):
                problem("k8s %s: Secret %s is neither in secrets.yaml nor optional" % (name, secret))
            for key in (keys or []) if material is not None else []:
                src = os.path.join(material, secret, key)
                if not os.path.isfile(src):
                    problem("k8s %s: no material for Secret %s key %s" % (name, secret, key))
                    continue
                files[key] = open(src).read()
            secret_of[vm["mountPath"]] = secret
        elif "emptyDir" in v:
            os.makedirs(target, exist_ok=True)
            mapping[vm["mountPath"]], kinds[vm["mountPath"]] = target, "emptyDir"
            continue
        else:
            problem("k8s %s: volume %s of an unexpected type" % (name, vm["name"]))
            continue
        if "subPath" in vm:
            if vm["subPath"] not in files:
                problem("k8s %s: subPath %s is not a key of volume %s" % (name, vm["subPath"], vm["name"]))
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").write(files[vm["subPath"]])
        else:
            os.makedirs(target, exist_ok=True)
            for k, text in files.items():
                open(os.path.join(target, k), "w").write(text)
        mapping[vm["mountPath"]], kinds[vm["mountPath"]] = target, kind
    return mapping, kinds, secret_of


def mount_of(path, mounts):
    """The longest mount path containing `path`."""
    best = None
    for m in mounts:
        if path == m or path.startswith(m.rstrip("/") + "/"):
            if best is None or len(m) > len(best):
                best = m
    return best


def check_pod_basics(name, spec, pod, labels):
    if not selector_matches(spec["selector"], labels) or not spec["selector"].get("matchLabels"):
        problem("k8s %s: the selector does not match the pod labels" % name)
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
        problem("k8s %s: pod securityContext must set runAsNonRoot and a non-root runAsUser" % name)
    if pod.get("automountServiceAccountToken") is not False:
        problem("k8s %s: automountServiceAccountToken should be false (no API access needed)" % name)
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False \
                or sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problem("k8s %s/%s: container securityContext needs readOnlyRootFilesystem, no privilege escalation, drop ALL" % (name, c["name"]))
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits", {}).get("memory"):
            problem("k8s %s/%s: resources need requests and a memory limit" % (name, c["name"]))
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        probes = {}
        for probe in ("readinessProbe", "livenessProbe"):
            hg = c.get(probe, {}).get("httpGet")
            if not hg:
                problem("k8s %s/%s: no HTTP %s" % (name, c["name"], probe))
                continue
            if hg["port"] not in ports and hg["port"] not in ports.values():
                problem("k8s %s/%s: %s port %s is not a container port" % (name, c["name"], probe, hg["port"]))
            probes[probe] = hg["path"]
        if probes != {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}:
            problem("k8s %s/%s: probes %s, expected readiness /readyz and liveness /healthz" % (name, c["name"], probes))


def workloads_of(docs, placeholders, material, out_dir):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    configmaps = by_kind.get("ConfigMap", {})
    for name in by_kind.get("Deployment", {}):
        problem("k8s: Deployment %s: authpulse workloads are StatefulSets (a claim per pod)" % name)
    workloads = []
    for name, sts in by_kind.get("StatefulSet", {}).items():
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        labels = spec["template"]["metadata"]["labels"]
        check_pod_basics(name, spec, pod, labels)
        for c in pod["containers"]:
            args = (c.get("command") or []) + (c.get("args") or [])
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            mapping, kinds, secret_of = lay_out(name, pod, claims, c, configmaps, placeholders, material,
                                                os.path.join(out_dir, name))
            if "--config" not in args:
                problem("k8s %s: the container runs %s without --config" % (name, args))
                continue
            config_container = args[args.index("--config") + 1]
            if config_container not in mapping:
                problem("k8s %s: --config %s is not mounted" % (name, config_container))
                continue
            config_host = mapping[config_container]
            text = open(config_host).read()
            cfg = yaml.safe_load(text)
            with open(config_host, "w") as f:
                f.write(rewrite_paths(text, mapping))
            kind = {"authpulse-coordinator": "coordinator", "authpulse-agent": "agent"}.get(args[0])
            if kind is None:
                problem("k8s %s: runs %s" % (name, args[0]))
                continue
            data_mount = mount_of(cfg.get("data_dir", ""), kinds)
            if data_mount is None or kinds[data_mount] not in ("persistentVolumeClaim", "emptyDir"):
                problem("k8s %s: data_dir %s is not on a writable volume (the root filesystem is read-only)" % (name, cfg.get("data_dir")))
            tls_mount = mount_of(str((cfg.get("tls") or {}).get("cert", "")), secret_of)
            w = {"name": name, "kind": kind, "binary": args[0], "args": args[1:], "config": config_host,
                 "env": {e["name"]: e["value"] for e in c.get("env", []) if "value" in e},
                 "replicas": spec.get("replicas", 1), "labels": labels, "ports": ports,
                 "data_volume": kinds.get(data_mount), "pki_secret": secret_of.get(tls_mount),
                 "tls_files": sorted(os.path.basename(str(v)) for k, v in (cfg.get("tls") or {}).items()
                                     if k in ("cert", "key", "ca", "client_ca"))}
            if kind == "coordinator":
                if spec.get("replicas") != 2:
                    problem("k8s %s: expected 2 replicas" % name)
                if not str(cfg.get("database", "")).startswith("postgres://") or "database_password_file" not in cfg:
                    problem("k8s %s: expected PostgreSQL with database_password_file" % name)
                if "tls" not in cfg or cfg.get("insecure"):
                    problem("k8s %s: the coordinator must use mTLS" % name)
                if port_of(cfg["grpc_listen"]) != ports.get("grpc") or port_of(cfg["http_listen"]) != ports.get("http"):
                    problem("k8s %s: container ports %s differ from the config's listen ports" % (name, ports))
                audit = cfg.get("audit_log", os.path.join(cfg.get("data_dir", ""), "audit.jsonl"))
                w["audit_volume"] = kinds.get(mount_of(audit, kinds))
                w["catalogs"] = [rewrite_paths(x, mapping) for x in cfg.get("catalog", [])]
            else:
                if spec.get("replicas") != 1:
                    problem("k8s %s: an agent id runs once: replicas 1" % name)
                if port_of(cfg["listen"]) != ports.get("metrics"):
                    problem("k8s %s: container port %s differs from listen %s" % (name, ports, cfg["listen"]))
                if labels.get("region") != cfg["region"]:
                    problem("k8s %s: pod label region=%s but the config says %s" % (name, labels.get("region"), cfg["region"]))
                if labels.get("app.kubernetes.io/instance") != cfg["agent_id"]:
                    problem("k8s %s: pod label app.kubernetes.io/instance=%s but agent_id is %s" % (name, labels.get("app.kubernetes.io/instance"), cfg["agent_id"]))
                w["region"] = cfg["region"]
                w["agent_id"] = cfg["agent_id"]
                w["coordinator_urls"] = cfg["coordinator"] if isinstance(cfg["coordinator"], list) else [cfg["coordinator"]]
            if w["pki_secret"] and not set(w["tls_files"]) <= CERT_MANAGER_KEYS:
                problem("k8s %s: TLS files %s are not cert-manager's keys %s" % (name, w["tls_files"], sorted(CERT_MANAGER_KEYS)))
            workloads.append(w)
    return by_kind, workloads


def check_services(by_kind, workloads):
    services = by_kind.get("Service", {})
    for name, svc in services.items():
        matched = [w for w in workloads if svc["spec"].get("selector") and selector_matches({"matchLabels": svc["spec"]["selector"]}, w["labels"])]
        if not matched:
            problem("k8s: Service %s selects no pod" % name)
        for p in svc["spec"]["ports"]:
            for w in matched:
                if p["targetPort"] not in w["ports"]:
                    problem("k8s: Service %s port %s targets %s, not a port of %s" % (name, p["name"], p["targetPort"], w["name"]))
    svc_coord = services.get("authpulse-coordinator")
    if not svc_coord or {p["name"] for p in svc_coord["spec"]["ports"]} != {"grpc", "http"}:
        problem("k8s: Service authpulse-coordinator needs ports grpc and http")
    for w in workloads:
        for url in w.get("coordinator_urls", []):
            m = re.match(r"https://([^:/]+):(\d+)$", url)
            if not m or m.group(1) not in services or int(m.group(2)) not in [p["port"] for p in services[m.group(1)]["spec"]["ports"] if p["name"] == "grpc"]:
                problem("k8s %s: coordinator URL %s is not the coordinator Service's grpc port over https" % (w["name"], url))
    coord = [w for w in workloads if w["kind"] == "coordinator"]
    pdbs = by_kind.get("PodDisruptionBudget", {})
    if not any(p["spec"].get("minAvailable") == 1 and coord and selector_matches(p["spec"]["selector"], coord[0]["labels"]) for p in pdbs.values()):
        problem("k8s: no PodDisruptionBudget with minAvailable 1 for the coordinators")


def peer_facts(peer, workloads):
    """A NetworkPolicy peer, with the pods of this namespace it selects
    (only for a podSelector alone: with a namespaceSelector it selects pods
    elsewhere)."""
    out = dict(peer)
    if set(peer) == {"podSelector"}:
        out["pods"] = sorted(w["name"] for w in workloads if selector_matches(peer["podSelector"], w["labels"]))
        if not out["pods"]:
            problem("k8s: NetworkPolicy peer %s selects no pod of the manifests" % peer)
    return out


def check_network_policies(by_kind, workloads):
    """Per workload and container port: who may connect, as the policies
    say. `["anyone"]` for a pod no ingress policy selects."""
    policies = by_kind.get("NetworkPolicy", {})
    for name, np in policies.items():
        selected = [w for w in workloads if selector_matches(np["spec"]["podSelector"], w["labels"])]
        if not selected:
            problem("k8s: NetworkPolicy %s selects no pod" % name)
        for rule in np["spec"].get("ingress") or []:
            for p in rule.get("ports") or []:
                for w in selected:
                    if p["port"] not in w["ports"] and p["port"] not in w["ports"].values():
                        problem("k8s: NetworkPolicy %s allows port %s, which %s does not have (%s)" % (name, p["port"], w["name"], w["ports"]))
    ingress = {}
    for w in workloads:
        isolating = [np for np in policies.values()
                     if selector_matches(np["spec"]["podSelector"], w["labels"])
                     and "Ingress" in np["spec"].get("policyTypes", ["Ingress"])]
        per_port = {}
        for port_name, number in w["ports"].items():
            if not isolating:
                per_port[port_name] = ["anyone"]
                continue
            peers = []
            for np in isolating:
                for rule in np["spec"].get("ingress") or []:
                    ports = rule.get("ports")
                    if ports and not any(p["port"] in (port_name, number) for p in ports):
                        continue
                    if "from" not in rule:
                        peers.append("anyone")
                    else:
                        peers += [peer_facts(p, workloads) for p in rule["from"]]
            per_port[port_name] = peers
        ingress[w["name"]] = per_port
    return ingress


def check_monitoring(by_kind, repo):
    """ServiceMonitors select the Services and name their ports; the job
    names (jobLabel's value, else the Service name) are the rules' names."""
    services = by_kind.get("Service", {})
    jobs = {}
    for name, sm in by_kind.get("ServiceMonitor", {}).items():
        targets = [s for s in services.values() if selector_matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        if not targets:
            problem("k8s: ServiceMonitor %s selects no Service" % name)
        for s in targets:
            label = sm["spec"].get("jobLabel")
            job = s["metadata"].get("labels", {}).get(label) if label else s["metadata"]["name"]
            jobs.setdefault(job, []).append(s["metadata"]["name"])
            names = {p["name"] for p in s["spec"]["ports"]}
            for e in sm["spec"].get("endpoints", []):
                if e.get("port") not in names or e.get("path") != "/metrics":
                    problem("k8s: ServiceMonitor %s endpoint %s is not a /metrics port of %s" % (name, e, s["metadata"]["name"]))
    if set(jobs) != {"authpulse-coordinator", "authpulse-agent"}:
        problem("k8s: ServiceMonitors make jobs %s, expected authpulse-coordinator and authpulse-agent (the job names the rules use)" % sorted(jobs))
    rules = yaml.safe_load(open(os.path.join(repo, "deploy", "prometheus", "rules.yml")))
    pr = by_kind.get("PrometheusRule", {})
    if [r["spec"]["groups"] for r in pr.values()] != [rules["groups"]]:
        problem("k8s: the PrometheusRule's groups differ from deploy/prometheus/rules.yml")
    return jobs


def cert_facts(by_kind):
    """Certificates and Issuers; every issuerRef names an Issuer here and a
    CA Issuer's Secret is made by a CA Certificate here."""
    certs = by_kind.get("Certificate", {})
    issuers = by_kind.get("Issuer", {})
    for name, c in certs.items():
        ref = c["spec"]["issuerRef"]
        if ref.get("kind", "Issuer") != "Issuer" or ref["name"] not in issuers:
            problem("k8s: Certificate %s is issued by %s %s, not an Issuer of the manifests" % (name, ref.get("kind", "Issuer"), ref["name"]))
    for name, i in issuers.items():
        if "ca" in i["spec"]:
            makers = [c for c in certs.values() if c["spec"]["secretName"] == i["spec"]["ca"]["secretName"]]
            if not any(c["spec"].get("isCA") for c in makers):
                problem("k8s: Issuer %s signs with Secret %s, which no CA Certificate makes" % (name, i["spec"]["ca"]["secretName"]))
    return [{"name": n, "secretName": c["spec"]["secretName"], "uris": c["spec"].get("uris", []),
             "dnsNames": c["spec"].get("dnsNames", []), "usages": c["spec"].get("usages", []),
             "issuer": c["spec"]["issuerRef"]["name"], "isCA": c["spec"].get("isCA", False)}
            for n, c in sorted(certs.items())]


# ------------------------------------------------------------------ main

def cmd_k8s(repo, out_dir, material, kubectl):
    import kubernetes_validate

    k8s = os.path.join(repo, "deploy", "k8s")
    overlays_dir = os.path.join(k8s, "overlays")
    names = sorted(n for n in os.listdir(overlays_dir)
                   if os.path.isfile(os.path.join(overlays_dir, n, "kustomization.yaml")))
    if len(names) < 2:
        problem("k8s: expected an overlay per region, found %s" % names)
    placeholders = {d["metadata"]["name"]: sorted(list(d.get("stringData", {})) + list(d.get("data", {})))
                    for d in yaml.safe_load_all(open(os.path.join(k8s, "secrets.yaml"))) if d}
    seen, validated, crd_validated = set(), [], []
    overlays, union = {}, {}
    for name in names:
        d = os.path.join(overlays_dir, name)
        plain = render(kubectl, d, name)
        agent = render(kubectl, os.path.join(d, "agent"), name + "/agent")
        components = offered_components(d)
        if not components:
            problem("k8s %s: kustomization.yaml offers no `# components:` block" % name)
        full = render_with_components(kubectl, d, components, out_dir, name)
        for docs, where in ((plain, name), (agent, name + "/agent"), (full, name + "+components")):
            validate(docs, where, seen, validated, crd_validated)
        expect_subset(plain, full, "%s: with its components, an object of the overlay" % name)
        expect_subset(agent, plain, "%s/agent: an object of the agent alone, in the overlay" % name)
        if any(x["kind"] == "StatefulSet" and "coordinator" in x["metadata"]["name"] for x in agent):
            problem("k8s %s/agent: the agent alone includes the coordinators" % name)
        # One namespace holding every overlay: an object two overlays both
        # render must be the same object.
        for key, doc in index(plain).items():
            if key in union and canonical(union[key]) != canonical(doc):
                problem("k8s: %s/%s differs between overlays, so applying both to one namespace fights" % key)
            union[key] = doc
        full_kinds = {}
        for x in full:
            full_kinds.setdefault(x["kind"], {})[x["metadata"]["name"]] = x
        overlays[name] = {
            "components": components,
            "statefulsets": sorted(x["metadata"]["name"] for x in plain if x["kind"] == "StatefulSet"),
            "agent_objects": sorted("%s/%s" % (x["kind"], x["metadata"]["name"]) for x in agent),
            "certificates": cert_facts(full_kinds),
            "monitoring_jobs": check_monitoring(full_kinds, repo),
        }
        for c in overlays[name]["certificates"]:
            if c["secretName"] in placeholders and set(placeholders[c["secretName"]]) != CERT_MANAGER_KEYS:
                problem("k8s: Secret %s is both a Certificate's and secrets.yaml's, with keys %s" % (c["secretName"], placeholders[c["secretName"]]))

    docs = list(union.values())
    by_kind, workloads = workloads_of(docs, placeholders, None if material == "-" else material,
                                      os.path.join(out_dir, "namespace"))
    for w in workloads:
        w["overlays"] = [n for n in names if w["name"] in overlays[n]["statefulsets"]]
    check_services(by_kind, workloads)
    ingress = check_network_policies(by_kind, workloads)

    # The catalog ConfigMap is the example catalog, verbatim but for the
    # editor's schema line (a path that means nothing in a cluster).
    example = open(os.path.join(repo, "deploy", "examples", "quickstart.yaml")).read()
    if example.startswith("# yaml-language-server:"):
        example = example.split("\n", 1)[1]
    cat = by_kind.get("ConfigMap", {}).get("authpulse-catalog", {}).get("data", {}).get("catalog.yaml")
    if cat != example:
        problem("k8s: ConfigMap authpulse-catalog catalog.yaml differs from deploy/examples/quickstart.yaml")
    catalog_files = []
    if cat is not None:
        p = os.path.join(out_dir, "configmap-catalog.yaml")
        open(p, "w").write(cat)
        catalog_files.append(p)
    return {"validated": validated, "crd_validated": crd_validated, "workloads": workloads,
            "overlays": overlays, "ingress": ingress, "secrets": placeholders,
            "catalogs": catalog_files, "kubernetes_version": kubernetes_validate.latest_version()}


def main():
    if len(sys.argv) != 6 or sys.argv[1] != "k8s":
        sys.exit(__doc__)
    facts = cmd_k8s(*sys.argv[2:])
    facts["problems"] = problems
    print(json.dumps(facts, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
