"""Structural checks of deploy/ for tests/tests/deploy_artifacts.rs.

Each subcommand parses one kind of artifact with a real parser (BuildKit's
Dockerfile parser via `dockerfile`, PyYAML, `promql-parser` for PromQL),
checks what can be checked without running anything, and prints one JSON
object on stdout: `{"problems": [...], ...facts for the Rust test}`. The
Rust test runs the real binaries and tools with those facts and asserts
`problems` is empty. deploy/k8s has its own checker, k8s_check.py, which
uses the helpers here.

    deploy_check.py dockerfile REPO BIN...
    deploy_check.py compose REPO OUT_DIR
    deploy_check.py promql REPO METRICS_JSON
"""

import copy
import glob
import json
import os
import re
import shlex
import sys

import yaml

problems = []


def problem(msg):
    problems.append(msg)


def port_of(addr):
    """Port of a `host:port` listen address."""
    return int(str(addr).rsplit(":", 1)[1])


# --------------------------------------------------------------- Dockerfile

def cmd_dockerfile(repo, bins):
    import dockerfile

    path = os.path.join(repo, "deploy", "Dockerfile")
    cmds = dockerfile.parse_file(path)
    args = {}
    stages = []
    for c in cmds:
        if c.cmd == "ARG":
            name, _, default = c.value[0].partition("=")
            if stages:
                # Declared in a stage: usable there, with its own default.
                stages[-1]["args"][name] = default or args.get(name, "")
            else:
                args[name] = default
        if c.cmd == "FROM":
            base = c.value[0]
            for k, v in args.items():
                base = base.replace("${%s}" % k, v).replace("$" + k, v)
            name = c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else None
            stages.append({"name": name, "base": base, "cmds": [], "args": {}})
        elif stages:
            stages[-1]["cmds"].append(c)
    if len(stages) < 2:
        problem("Dockerfile: expected a multi-stage build, found %d stage(s)" % len(stages))
        return {}
    builder, final = stages[0], stages[-1]

    # The builder compiles exactly the workspace's binaries, release, locked.
    built = []
    for c in builder["cmds"]:
        if c.cmd == "RUN":
            text = " ".join(c.value)
            for m in re.finditer(r"cargo build([^&;]*)", text):
                flags = m.group(1).split()
                if "--release" not in flags or "--locked" not in flags:
                    problem("Dockerfile: `cargo build` without --release --locked: " + m.group(0))
                built += [flags[i + 1] for i, f in enumerate(flags) if f == "--bin"]
    if sorted(built) != sorted(bins):
        problem("Dockerfile: cargo build --bin %s, but the workspace's binaries are %s" % (sorted(built), sorted(bins)))
    rust_image = builder["base"]
    if not rust_image.startswith("rust:"):
        problem("Dockerfile: the builder stage is not the rust image: " + rust_image)

    # The final stage copies those binaries from the builder, runs as a
    # numeric non-root user, has CA certificates and exposes the ports.
    copied = []
    for c in final["cmds"]:
        if c.cmd == "COPY":
            if "--from=" + (builder["name"] or "0") in c.flags:
                copied += [os.path.basename(s) for s in c.value[:-1]]
    if sorted(copied) != sorted(bins):
        problem("Dockerfile: the runtime stage copies %s, expected %s" % (sorted(copied), sorted(bins)))
    users = [c.value[0] for c in final["cmds"] if c.cmd == "USER"]
    user = users[-1] if users else None
    if user is None:
        problem("Dockerfile: the runtime stage has no USER (runs as root)")
    else:
        uid = user.split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            problem("Dockerfile: USER %s is not a numeric non-root uid" % user)
    final_text = " ".join(" ".join(c.value) for c in final["cmds"])
    if "ca-certificates" not in final_text and "distroless" not in final["base"]:
        problem("Dockerfile: the runtime stage installs no ca-certificates")
    if final["base"].startswith("rust:"):
        problem("Dockerfile: the runtime stage is the rust toolchain image")
    exposed = sorted(int(p.split("/")[0]) for c in final["cmds"] if c.cmd == "EXPOSE" for p in c.value)
    cmd = [c.value for c in final["cmds"] if c.cmd in ("CMD", "ENTRYPOINT")]
    if cmd and cmd[-1][0] not in bins:
        problem("Dockerfile: the default command runs %s, not one of %s" % (cmd[-1][0], bins))

    # The ports the shipped configs listen on are the ones exposed.
    config_ports = set()
    configs = ["compose/coordinator.yaml", "compose/agent-eu-west.yaml", "compose/agent-us-east.yaml",
               "k8s/base/coordinator/config/coordinator.yaml"]
    configs += sorted(os.path.relpath(f, os.path.join(repo, "deploy"))
                      for f in glob.glob(os.path.join(repo, "deploy", "k8s", "overlays", "*", "agent", "agent.yaml")))
    http_ports = set()
    for f in configs:
        c = yaml.safe_load(open(os.path.join(repo, "deploy", f)))
        for key in ("grpc_listen", "http_listen", "listen"):
            if key in c:
                config_ports.add(port_of(c[key]))
        if "http_listen" in c:
            http_ports.add(port_of(c["http_listen"]))
    if sorted(config_ports) != exposed:
        problem("Dockerfile: EXPOSE %s, but the configs listen on %s" % (exposed, sorted(config_ports)))

    # HEALTHCHECK: exec form (no shell in the check), running one of the
    # copied binaries; the test runs it and reads its timeout.
    checks = [c for c in final["cmds"] if c.cmd == "HEALTHCHECK"]
    healthcheck = None
    if len(checks) != 1:
        problem("Dockerfile: the runtime stage has %d HEALTHCHECK instructions, expected 1" % len(checks))
    else:
        c = checks[0]
        if not c.value or c.value[0].upper() != "CMD" or not c.json:
            problem("Dockerfile: HEALTHCHECK is not `CMD [\"binary\", ...]` (exec form): " + c.original)
        else:
            flags = dict(f.lstrip("-").split("=", 1) for f in c.flags)
            healthcheck = {"cmd": list(c.value[1:]), "flags": flags}
            if c.value[1] not in copied:
                problem("Dockerfile: HEALTHCHECK runs %s, not a binary the image has (%s)" % (c.value[1], copied))

    # OCI annotations as labels; ${ARG} values resolved with the stage's
    # defaults, and which build ARG each one comes from.
    labels, label_args = {}, {}
    for c in final["cmds"]:
        if c.cmd == "LABEL":
            for key, raw in zip(c.value[::2], c.value[1::2]):
                value = shlex.split(raw)[0] if raw.strip() else ""
                for m in re.finditer(r"\$\{?(\w+)\}?", value):
                    label_args[key] = m.group(1)
                for k, v in final["args"].items():
                    value = value.replace("${%s}" % k, v).replace("$" + k, v)
                labels[key] = value
    oci = ["title", "description", "source", "licenses", "version", "revision"]
    missing = [k for k in oci if "org.opencontainers.image." + k not in labels]
    if missing:
        problem("Dockerfile: no org.opencontainers.image.{%s} label" % ",".join(missing))

    ignore = os.path.join(repo, "deploy", "Dockerfile.dockerignore")
    if not os.path.exists(ignore) or "target/" not in open(ignore).read().split():
        problem("deploy/Dockerfile.dockerignore must keep target/ out of the build context")
    return {
        "stages": [s["name"] for s in stages],
        "builder_image": rust_image,
        "runtime_image": final["base"],
        "built": built,
        "copied": copied,
        "user": user,
        "exposed": exposed,
        "healthcheck": healthcheck,
        "coordinator_http_ports": sorted(http_ports),
        "labels": labels,
        "label_args": label_args,
        "args": final["args"],
    }


# ------------------------------------------------------------------ Compose

def rewrite_paths(text, mapping):
    """Replaces container paths by host paths in one pass (a replacement is
    never rewritten again), longest container path first, only where a path
    starts (so /etc/a does not match inside /x/etc/a)."""
    if not mapping:
        return text
    alternatives = "|".join(re.escape(c) for c in sorted(mapping, key=len, reverse=True))
    pattern = r"(?<![\w/.-])(" + alternatives + r")(?=$|[/\s,\]}'\"])"
    return re.sub(pattern, lambda m: mapping[m.group(1)], text, flags=re.M)


def cmd_compose(repo, out_dir):
    deploy = os.path.join(repo, "deploy")
    path = os.path.join(deploy, "docker-compose.yml")
    doc = yaml.safe_load(open(path))
    services = doc.get("services", {})
    top_secrets = doc.get("secrets", {})
    top_volumes = doc.get("volumes", {}) or {}

    def host(p):
        return os.path.normpath(os.path.join(deploy, p))

    for name, s in top_secrets.items():
        if not os.path.isfile(host(s["file"])):
            problem("compose: secret %s: file %s is missing" % (name, s["file"]))

    mounts = {}
    for name, svc in services.items():
        m = {}
        for v in svc.get("volumes", []):
            parts = v.split(":")
            src, target = parts[0], parts[1]
            if src.startswith(".") or src.startswith("/"):
                if not os.path.exists(host(src)):
                    problem("compose: %s mounts %s, which is not in the repository" % (name, src))
                m[target] = host(src)
            else:
                if src not in top_volumes:
                    problem("compose: %s uses volume %s, not declared under volumes:" % (name, src))
                m[target] = os.path.join(out_dir, "volumes", name, src)
        for s in svc.get("secrets", []):
            src = s["source"] if isinstance(s, dict) else s
            target = s.get("target", src) if isinstance(s, dict) else s
            if src not in top_secrets:
                problem("compose: %s uses secret %s, not declared under secrets:" % (name, src))
                continue
            target = target if target.startswith("/") else "/run/secrets/" + target
            m[target] = host(top_secrets[src]["file"])
        mounts[name] = m

    pg = [n for n, s in services.items() if str(s.get("image", "")).startswith("postgres:")]
    if len(pg) != 1:
        problem("compose: expected one postgres service (official image), found %s" % pg)
    elif "test" not in (services[pg[0]].get("healthcheck") or {}):
        problem("compose: the postgres service has no healthcheck")

    def command(svc):
        c = svc.get("command") or []
        return c if isinstance(c, list) else c.split()

    workloads = []
    coordinators, agents = [], []
    for name, svc in services.items():
        cmd = command(svc)
        if not cmd or cmd[0] not in ("authpulse-coordinator", "authpulse-agent"):
            continue
        if "--config" not in cmd:
            problem("compose: %s runs %s without --config" % (name, cmd))
            continue
        config_container = cmd[cmd.index("--config") + 1]
        if config_container not in mounts[name]:
            problem("compose: %s reads %s, which is not mounted" % (name, config_container))
            continue
        config_host = mounts[name][config_container]
        cfg = yaml.safe_load(open(config_host))
        kind = "coordinator" if cmd[0] == "authpulse-coordinator" else "agent"
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
        for target, h in mounts[name].items():
            if h.startswith(out_dir):
                os.makedirs(h, exist_ok=True)
        rewritten = os.path.join(out_dir, name, os.path.basename(config_container))
        with open(rewritten, "w") as f:
            f.write(rewrite_paths(open(config_host).read(), mounts[name]))
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        w = {"service": name, "kind": kind, "binary": cmd[0], "args": cmd[1:],
             "config_container": config_container, "config": rewritten,
             "env": {k: str(v) for k, v in env.items()}}
        if kind == "coordinator":
            deps = svc.get("depends_on") or {}
            if not pg or not isinstance(deps, dict) or deps.get(pg[0], {}).get("condition") != "service_healthy":
                problem("compose: %s does not wait for a healthy postgres" % name)
            db = str(cfg.get("database", ""))
            if not db.startswith("postgres://") or (pg and "@%s:" % pg[0] not in db):
                problem("compose: %s: database %r is not the compose postgres" % (name, db))
            if ":" in db.split("@")[0][len("postgres://"):]:
                problem("compose: %s: a password in the database URL" % name)
            if cfg.get("insecure") is not True and "tls" not in cfg:
                problem("compose: %s: neither tls nor insecure" % name)
            w["grpc_port"] = port_of(cfg["grpc_listen"])
            w["http_port"] = port_of(cfg["http_listen"])
            w["catalogs"] = [rewrite_paths(c, mounts[name]) for c in cfg.get("catalog", [])]
            coordinators.append(w)
        else:
            urls = cfg["coordinator"] if isinstance(cfg["coordinator"], list) else cfg["coordinator"].split(",")
            w["coordinator_urls"] = urls
            w["region"] = cfg["region"]
            w["agent_id"] = cfg["agent_id"]
            w["listen_port"] = port_of(cfg["listen"])
            # The image's HEALTHCHECK (`authpulse health`) asks the
            # coordinator's port by default: an agent container must point it
            # at its own listener or Docker marks it unhealthy.
            want = "http://127.0.0.1:%d/healthz" % w["listen_port"]
            if w["env"].get("AUTHPULSE_HEALTH_URL") != want:
                problem("compose: %s: AUTHPULSE_HEALTH_URL is %r, expected %s (the agent's listen port)"
                        % (name, w["env"].get("AUTHPULSE_HEALTH_URL"), want))
            agents.append(w)
        workloads.append(w)

    if len(coordinators) < 2:
        problem("compose: expected two coordinators, found %d" % len(coordinators))
    catalogs = {tuple(c["catalogs"]) for c in coordinators}
    if len(catalogs) != 1:
        problem("compose: the coordinators mount different catalogs: %s" % catalogs)
    for c in coordinators:
        for cat in c["catalogs"]:
            if not os.path.isfile(cat):
                problem("compose: %s: catalog %s is not mounted from the repository" % (c["service"], cat))
    regions = {a["region"] for a in agents}
    if len(regions) < 2:
        problem("compose: expected agents in two regions, found %s" % sorted(regions))
    coord_urls = {"http://%s:%d" % (c["service"], c["grpc_port"]) for c in coordinators}
    for a in agents:
        if set(a["coordinator_urls"]) != coord_urls:
            problem("compose: agent %s lists %s, expected every coordinator %s" % (a["service"], a["coordinator_urls"], sorted(coord_urls)))

    # Prometheus: the shipped config and rules are mounted, and it scrapes
    # every coordinator and agent under the job names the rules use.
    prom = [n for n, s in services.items() if str(s.get("image", "")).startswith("prom/prometheus:")]
    prometheus = {}
    if len(prom) != 1:
        problem("compose: expected one prometheus service, found %s" % prom)
    else:
        m = mounts[prom[0]]
        rules_host = os.path.join(deploy, "prometheus", "rules.yml")
        config_host = os.path.join(deploy, "prometheus", "prometheus.yml")
        config_target = [t for t, h in m.items() if h == config_host]
        rules_target = [t for t, h in m.items() if h == rules_host]
        if not config_target or not rules_target:
            problem("compose: prometheus must mount prometheus/prometheus.yml and prometheus/rules.yml")
        else:
            pcfg = yaml.safe_load(open(config_host))
            import fnmatch
            if not any(fnmatch.fnmatch(rules_target[0], g) for g in pcfg.get("rule_files", [])):
                problem("compose: prometheus.yml rule_files %s do not match the mounted %s" % (pcfg.get("rule_files"), rules_target[0]))
            jobs = {j["job_name"]: {t for sc in j.get("static_configs", []) for t in sc["targets"]}
                    for j in pcfg.get("scrape_configs", [])}
            want_c = {"%s:%d" % (c["service"], c["http_port"]) for c in coordinators}
            want_a = {"%s:%d" % (a["service"], a["listen_port"]) for a in agents}
            if jobs.get("authpulse-coordinator") != want_c:
                problem("compose: job authpulse-coordinator scrapes %s, expected %s" % (jobs.get("authpulse-coordinator"), want_c))
            if jobs.get("authpulse-agent") != want_a:
                problem("compose: job authpulse-agent scrapes %s, expected %s" % (jobs.get("authpulse-agent"), want_a))
            # A copy for `promtool check config` with the rule files where
            # they are in the repository.
            local = copy.deepcopy(pcfg)
            local["rule_files"] = [rules_host]
            prometheus["config"] = os.path.join(out_dir, "prometheus.yml")
            yaml.safe_dump(local, open(prometheus["config"], "w"))
    return {"coordinators": coordinators, "agents": agents, "prometheus": prometheus,
            "catalogs": sorted({c for w in coordinators for c in w["catalogs"]})}


# ------------------------------------------------------------------- PromQL

PROMETHEUS_OWN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped"}
TARGET_LABELS = {"job", "instance"}
GRAFANA_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def substitute(expr):
    """Grafana variables to something PromQL can parse: durations for the
    interval variables, a regex for the rest (they are only used in =~)."""
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", lambda m: GRAFANA_VARS.get(m.group(1), ".*"), expr)


def selectors(expr):
    """(metric name, [label names in matchers], [grouping labels]) per
    vector selector, from the parsed AST."""
    import promql_parser as pp

    out = []
    groupings = []

    def visit(node):
        if isinstance(node, pp.AggregateExpr) and node.modifier is not None \
                and str(node.modifier.type).endswith("By"):
            groupings.append(list(node.modifier.labels))
        if isinstance(node, pp.VectorSelector):
            name = node.name
            labels = []
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    name = m.value
                else:
                    labels.append(m.name)
            out.append((name, labels))
        return True

    pp.walk(pp.parse(expr), visit)
    return out, groupings


def cmd_promql(repo, metrics_json):
    facts = json.load(open(metrics_json))
    live = facts["metrics"]          # name -> [label names] from the running binaries
    listed = facts["listed"]         # name -> reason: appears only after an event the test can't cause
    agent_target_labels = set(facts.get("agent_target_labels", []))

    rules = yaml.safe_load(open(os.path.join(repo, "deploy", "prometheus", "rules.yml")))
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    exprs = []
    for g in rules["groups"]:
        for r in g["rules"]:
            exprs.append(("rules.yml %s" % (r.get("record") or r.get("alert")), str(r["expr"])))

    dash = json.load(open(os.path.join(repo, "deploy", "grafana", "authpulse.json")))
    if not 36 <= dash.get("schemaVersion", 0) <= 41:
        problem("dashboard: schemaVersion %s (expected about 39)" % dash.get("schemaVersion"))
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problem("dashboard: no Prometheus datasource variable named `datasource`")
    ids = []
    kinds = set()

    def panels_of(ps):
        for p in ps:
            yield p
            yield from panels_of(p.get("panels", []))

    for v in variables.values():
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.match(r"label_values\((.+),\s*(\w+)\)$", q)
            if not m:
                problem("dashboard: variable %s query %r is not label_values(metric, label)" % (v["name"], q))
            else:
                exprs.append(("dashboard variable " + v["name"], m.group(1)))
                sel, _ = selectors(m.group(1))
                if sel and sel[0][0] in live and m.group(2) not in live[sel[0][0]]:
                    problem("dashboard: variable %s: %s has no label %s" % (v["name"], sel[0][0], m.group(2)))
    for p in panels_of(dash.get("panels", [])):
        ids.append(p.get("id"))
        gp = p.get("gridPos", {})
        if gp.get("x", 0) + gp.get("w", 0) > 24:
            problem("dashboard: panel %r is wider than the grid" % p.get("title"))
        if p.get("type") == "row":
            continue
        kinds.add(p["type"])
        if p.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            problem("dashboard: panel %r does not use the datasource variable" % p.get("title"))
        if not p.get("targets"):
            problem("dashboard: panel %r has no queries" % p.get("title"))
        for t in p.get("targets", []):
            exprs.append(("dashboard panel %r" % p["title"], t["expr"]))
    if len(ids) != len(set(ids)):
        problem("dashboard: duplicate panel ids")

    referenced = {}
    for where, expr in exprs:
        try:
            sels, groupings = selectors(substitute(expr))
        except Exception as e:  # the parser's own message says what and where
            problem("%s: PromQL does not parse: %s: %s" % (where, e, expr))
            continue
        for name, labels in sels:
            if name is None:
                problem("%s: a selector without a metric name: %s" % (where, expr))
                continue
            referenced.setdefault(name, set()).add(where)
            if name in live:
                allowed = set(live[name]) | TARGET_LABELS
                if name.startswith("authpulse_agent_"):
                    allowed |= agent_target_labels
                for l in labels:
                    if l not in allowed:
                        problem("%s: %s has no label %s (it has %s)" % (where, name, l, sorted(live[name])))
        # Grouping labels must exist on some metric the expression reads.
        known = set(TARGET_LABELS) | {"le"} | agent_target_labels
        for name, _ in sels:
            known |= set(live.get(name, []))
            if name not in live:
                # Recorded, Prometheus' own, listed or missing (reported
                # below): its labels are not known here.
                known = None
                break
        if known is not None:
            for g in groupings:
                for l in g:
                    if l not in known:
                        problem("%s: groups by %s, which no metric in the expression has" % (where, l))
    missing = sorted(n for n in referenced
                     if n not in live and n not in recorded and n not in PROMETHEUS_OWN
                     and n not in listed)
    for n in missing:
        problem("%s is used (%s) but no running coordinator or agent exports it" % (n, sorted(referenced[n])[0]))
    unused_listed = sorted(n for n in listed if n not in referenced)
    for n in unused_listed:
        problem("%s is listed as event-only but nothing uses it: drop it from the list" % n)
    for n in sorted(listed):
        if n in live:
            problem("%s is listed as event-only but the binaries export it now: drop it from the list" % n)
    return {"referenced": sorted(referenced), "recorded": sorted(recorded), "expressions": len(exprs),
            "panel_types": sorted(kinds), "panels": len(ids)}


def main():
    cmd = sys.argv[1]
    if cmd == "dockerfile":
        facts = cmd_dockerfile(sys.argv[2], sys.argv[3:])
    elif cmd == "compose":
        facts = cmd_compose(sys.argv[2], sys.argv[3])
    elif cmd == "promql":
        facts = cmd_promql(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown subcommand " + cmd)
    facts["problems"] = problems
    print(json.dumps(facts, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
