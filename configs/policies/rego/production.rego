# Production images need SLSA provenance from our builder, and a base image built in the last 90 days.
package acme.production

builder := "https://github.com/acme/builder/.github/workflows/release.yml@refs/heads/main"

provenance := [a.predicate |
	some a in input.attestations
	a.predicateType == "https://slsa.dev/provenance/v1"
]

deny contains "no SLSA provenance" if count(provenance) == 0

deny contains msg if {
	some p in provenance
	p.runDetails.builder.id != builder
	msg := sprintf("built by %v, not by our builder", [p.runDetails.builder.id])
}

deny contains msg if {
	some p in provenance
	some dep in p.buildDefinition.resolvedDependencies
	dep.annotations.role == "base"
	built := time.parse_rfc3339_ns(dep.annotations.created)
	age := time.parse_rfc3339_ns(input.now) - built
	age > 90 * 24 * 60 * 60 * 1000000000
	msg := sprintf("base image %v is older than 90 days", [dep.name])
}
