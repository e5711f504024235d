// Package regotest holds test helpers for policies with Rego rules.
package regotest

import (
	"sync/atomic"

	"github.com/portcullis/portcullis/policy"
)

// CountingCompiler is a policy.ModuleCompiler that counts, in N, the evaluations of the modules it compiles with
// the compiler it wraps: a test can tell whether a decision evaluated a module at all.
type CountingCompiler struct {
	policy.ModuleCompiler
	N *atomic.Int64
}

// CompileModule compiles m with the wrapped compiler and counts its evaluations.
func (c CountingCompiler) CompileModule(m policy.Module) (policy.ModuleEvaluator, error) {
	ev, err := c.ModuleCompiler.CompileModule(m)
	if err != nil {
		return nil, err
	}
	return countingEvaluator{ev, c.N}, nil
}

type countingEvaluator struct {
	policy.ModuleEvaluator
	n *atomic.Int64
}

func (c countingEvaluator) Deny(in *policy.Input) ([]string, error) {
	c.n.Add(1)
	return c.ModuleEvaluator.Deny(in)
}
