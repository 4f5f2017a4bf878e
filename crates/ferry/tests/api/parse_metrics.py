"""Reads a /metrics body as Prometheus would: with the parser its content
type names (argv[1]), from prometheus-client, the reference implementation.
Prints each family's type and samples as JSON; exits 1 if it does not parse."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic

content_type, body = sys.argv[1], sys.stdin.read()
if content_type.startswith("application/openmetrics-text"):
    parse = openmetrics
elif content_type.startswith("text/plain"):
    parse = classic
else:
    sys.exit(f"no Prometheus parser reads {content_type!r}")
families = {
    family.name: {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
    for family in parse(body)
}
json.dump(families, sys.stdout)
