// Package rego evaluates the Rego modules that policy rules carry (rego:, regoFile:) with OPA's Go SDK. It is
// the policy.ModuleCompiler that cmd/portcullis plugs into policy.Load: package policy keeps the modules' text and
// origin and stays free of OPA (which brings net/http), and this package compiles each module once, when the
// policy loads, and evaluates it over the facts the rule gathered (policy.Input).
//
// A module is Rego v1, in any package, and defines `deny` as a set of messages:
//
//	package portcullis.acme
//
//	deny contains msg if {
//		input.scan.counts.medium > 3
//		msg := sprintf("%d medium findings, at most 3", [input.scan.counts.medium])
//	}
//
// Evaluation is pure and bounded. Builtins that do I/O, read the clock or draw random numbers (http.send, net.*,
// opa.runtime, time.now_ns, rand.intn, uuid.rfc4122) and print are removed at compile time, so a module that calls
// one does not load; a module reads the decision's time from input.now. Each evaluation has a time bound (100 ms by
// default, WithTimeout), after which it is an error, which the rule's onError decides (deny by default). Modules
// are type-checked against the input's JSON schema (input.schema.json), so a field that does not exist
// (input.scan.count) is a load error, not a rule that never denies.
//
// Test runs the Rego unit tests (test_ rules) kept beside the modules, as `opa test` does, under the same
// capabilities: `portcullis policy test DIR`.
//
// This package never reads files but in Test, and never does network I/O.
package rego
