package acme.production_test

import data.acme.production

good := {"runDetails": {"builder": {"id": production.builder}}, "buildDefinition": {"resolvedDependencies": [
	{"name": "base", "annotations": {"role": "base", "created": "2026-10-01T00:00:00Z"}},
]}}

slsa(p) := {"predicateType": "https://slsa.dev/provenance/v1", "signedBy": ["release"], "predicate": p}

test_admits_our_builder_and_a_fresh_base if {
	count(production.deny) == 0 with input as {"now": "2026-11-29T00:00:00Z", "attestations": [slsa(good)]}
}

test_denies_without_provenance if {
	production.deny == {"no SLSA provenance"} with input as {"now": "2026-11-29T00:00:00Z", "attestations": []}
}

test_denies_another_builder if {
	p := json.patch(good, [{"op": "replace", "path": "/runDetails/builder/id", "value": "https://evil.example/ci"}])
	production.deny == {"built by https://evil.example/ci, not by our builder"} with input as {"now": "2026-11-29T00:00:00Z", "attestations": [slsa(p)]}
}

test_denies_an_old_base if {
	production.deny == {"base image base is older than 90 days"} with input as {"now": "2027-06-01T00:00:00Z", "attestations": [slsa(good)]}
}
