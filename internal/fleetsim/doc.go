// Package fleetsim simulates a fleet rolling out new images through several Portcullis replicas that share one
// Redis (decisions, tags, leases) and one content store, in front of one real upstream registry, and counts what
// reached the upstream and how often each digest was verified. The performance harness (bench) runs it at fleet
// scale; an integration test runs a small one and asserts the counts. Test code only: it takes a testing.TB.
//
// It owns no production behaviour and must never be imported outside tests and the harness.
package fleetsim
