"""JSON Schemas of the custom resources in deploy/k8s, for k8s_check.py.

kubernetes-validate knows only the built-in kinds; for the CRDs the
manifests use these schemas hold the fields used, written from each
project's API reference (not its full CRD): required fields as documented,
enums where the API has them, and no other fields (a typo is an error, as
with kubectl --validate=strict).
"""

# The fields of the prometheus-operator CRDs (monitoring.coreos.com/v1) these
# manifests use, written from the operator's API reference: required fields
# as documented (ServiceMonitor: spec.selector and spec.endpoints;
# PrometheusRule: groups[].name, rules[].expr, exactly one of record/alert),
# and no other fields (a typo is an error, as with kubectl --validate=strict).
LABEL_SELECTOR = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "required": ["key", "operator"], "additionalProperties": False,
            "properties": {"key": {"type": "string"},
                           "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                           "values": {"type": "array", "items": {"type": "string"}}}}},
    },
}
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
METADATA = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
SERVICE_MONITOR = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
        "metadata": METADATA,
        "spec": {"type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                 "properties": {
                     "selector": LABEL_SELECTOR,
                     "jobLabel": {"type": "string"},
                     "targetLabels": {"type": "array", "items": {"type": "string"}},
                     "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                     "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                         "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
                     "endpoints": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "additionalProperties": False,
                         "properties": {"port": {"type": "string"}, "targetPort": {"type": ["string", "integer"]},
                                        "path": {"type": "string", "pattern": "^/"},
                                        "scheme": {"enum": ["http", "https"]},
                                        "interval": DURATION, "scrapeTimeout": DURATION,
                                        "honorLabels": {"type": "boolean"}}}}}},
    },
}
PROMETHEUS_RULE = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": METADATA,
        "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
            "groups": {"type": "array", "items": {
                "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                "properties": {"name": {"type": "string", "minLength": 1}, "interval": DURATION,
                               "rules": {"type": "array", "items": {
                                   "type": "object", "required": ["expr"], "additionalProperties": False,
                                   "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                                   "properties": {"record": {"type": "string"}, "alert": {"type": "string"},
                                                  "expr": {"type": ["string", "integer"]},
                                                  "for": DURATION, "keep_firing_for": DURATION,
                                                  "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                                  "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}},
    },
}

# cert-manager.io/v1, from cert-manager's API reference. Go durations as
# cert-manager parses them ("2160h", "90m").
GO_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
KEY_USAGES = ["signing", "digital signature", "content commitment", "key encipherment", "key agreement",
              "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
              "server auth", "client auth", "code signing", "email protection", "s/mime",
              "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
              "microsoft sgc", "netscape sgc"]
ISSUER_REF = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "minLength": 1},
    "kind": {"enum": ["Issuer", "ClusterIssuer"]},
    "group": {"type": "string"}}}
CERTIFICATE = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"}, "kind": {"const": "Certificate"},
        "metadata": METADATA,
        "spec": {
            "type": "object", "required": ["secretName", "issuerRef"], "additionalProperties": False,
            # A certificate must name something.
            "anyOf": [{"required": [k]} for k in ("commonName", "dnsNames", "uris", "ipAddresses", "emailAddresses")],
            "properties": {
                "secretName": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                "issuerRef": ISSUER_REF,
                "commonName": {"type": "string", "maxLength": 64},
                "dnsNames": {"type": "array", "items": {"type": "string"}},
                "uris": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z][a-z0-9+.-]*:"}},
                "ipAddresses": {"type": "array", "items": {"type": "string"}},
                "emailAddresses": {"type": "array", "items": {"type": "string"}},
                "duration": GO_DURATION, "renewBefore": GO_DURATION,
                "isCA": {"type": "boolean"},
                "usages": {"type": "array", "items": {"enum": KEY_USAGES}},
                "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                    "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                    "size": {"type": "integer"},
                    "encoding": {"enum": ["PKCS1", "PKCS8"]},
                    "rotationPolicy": {"enum": ["Never", "Always"]}}}}}},
}
ISSUER = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"}, "kind": {"const": "Issuer"},
        "metadata": METADATA,
        # Exactly one issuer type; these two are the ones used.
        "spec": {"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
                 "properties": {
                     "selfSigned": {"type": "object", "additionalProperties": False, "properties": {
                         "crlDistributionPoints": {"type": "array", "items": {"type": "string"}}}},
                     "ca": {"type": "object", "required": ["secretName"], "additionalProperties": False,
                            "properties": {"secretName": {"type": "string", "minLength": 1},
                                           "crlDistributionPoints": {"type": "array", "items": {"type": "string"}}}}}}},
}

CRD_SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR, "PrometheusRule": PROMETHEUS_RULE,
               "Certificate": CERTIFICATE, "Issuer": ISSUER}
