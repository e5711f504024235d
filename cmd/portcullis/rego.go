package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/policy/rego"
)

// policyOptions is how every command loads a policy: its rules' Rego modules compile with OPA, each evaluation
// bounded by admission.regoTimeout (100ms by default). serve, check, validate and reloads share it, so a module
// that validate accepts is the one serve enforces.
func policyOptions(cfg *configs.Config) ([]policy.Option, error) {
	var opts []rego.Option
	if d := time.Duration(cfg.Admission.RegoTimeout); d > 0 {
		opts = append(opts, rego.WithTimeout(d))
	}
	e, err := rego.New(opts...)
	if err != nil {
		return nil, err
	}
	return []policy.Option{policy.WithModuleCompiler(e)}, nil
}

// errTestsFailed is a `policy test` run with a failing test (or none): the report says which.
var errTestsFailed = errors.New("policy tests failed")

// policyCmd runs `portcullis policy test DIR...`: the Rego unit tests (test_ rules) kept beside a policy's modules,
// as `opa test` runs them, under the capabilities the gate compiles modules with (http.send, net.*, opa.runtime and
// the clock are not available to tests either).
func policyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "test" {
		return usageError{msg: "usage: portcullis policy test [-v] [--run REGEX] [--timeout 5s] DIR|FILE..."}
	}
	fs := newFlagSet("policy test", stderr)
	verbose := fs.Bool("v", false, "print every test, not only the failures")
	run := fs.String("run", "", "run only the tests whose name matches this regular expression")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on each test")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{msg: "policy test needs a directory or .rego file, e.g. portcullis policy test policies/"}
	}
	if *run != "" {
		if _, err := regexp.Compile(*run); err != nil {
			return usageError{msg: fmt.Sprintf("--run: %v", err)}
		}
	}
	e, err := rego.New()
	if err != nil {
		return err
	}
	sum, err := e.Test(ctx, fs.Args(), stdout, rego.TestOptions{Verbose: *verbose, Run: *run, Timeout: *timeout})
	if err != nil {
		return err
	}
	if !sum.OK() {
		if sum.Passed+sum.Failed+sum.Errors == 0 {
			return fmt.Errorf("%w: no test_ rules found under %v", errTestsFailed, fs.Args())
		}
		return errTestsFailed
	}
	return nil
}
