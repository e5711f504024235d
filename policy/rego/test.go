package rego

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions tune Test.
type TestOptions struct {
	// Verbose prints every test, passed or not, and the failures' details. Default false: failures only.
	Verbose bool
	// Timeout bounds each test. Default 5s (opa test's).
	Timeout time.Duration
	// Run runs only the tests whose name matches this regular expression. Default "": every test.
	Run string
}

// TestSummary counts a Test run's results.
type TestSummary struct {
	Passed, Failed, Errors, Skipped int
}

// OK reports whether the run had tests and every one that ran passed.
func (s TestSummary) OK() bool { return s.Failed == 0 && s.Errors == 0 && s.Passed > 0 }

// Test runs the Rego unit tests (rules named test_*) in the .rego files under paths (files or directories, walked
// recursively; hidden directories are skipped), as `opa test` does, and writes opa test's report to w. Modules and
// tests compile as Rego v1 under the capabilities modules are loaded with, so a test cannot pass on a builtin the
// gate refuses; print output is shown. The input schema is not applied: a test gives its own input with `with
// input as`. Its error means the tests could not run (a file unreadable, a module that does not compile).
func (e *Engine) Test(ctx context.Context, paths []string, w io.Writer, opts TestOptions) (TestSummary, error) {
	modules := map[string]*ast.Module{}
	var errs []error
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && len(d.Name()) > 1 && d.Name()[0] == '.' {
					return filepath.SkipDir
				}
				return nil
			}
			if filepath.Ext(path) != ".rego" {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			mod, err := ast.ParseModuleWithOpts(path, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			modules[path] = mod
			return nil
		})
		if err != nil {
			return TestSummary{}, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return TestSummary{}, explain(err)
	}
	if len(modules) == 0 {
		return TestSummary{}, fmt.Errorf("no .rego files in %v", paths)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	c := ast.NewCompiler().
		WithCapabilities(e.caps).
		WithEnablePrintStatements(true).
		WithDefaultRegoVersion(ast.RegoV1)
	runner := tester.NewRunner().
		SetCompiler(c).
		SetModules(modules).
		SetTimeout(timeout).
		SetDefaultRegoVersion(ast.RegoV1).
		CapturePrintOutput(true).
		Filter(opts.Run)
	results, err := runner.RunTests(ctx, nil)
	if err != nil {
		return TestSummary{}, explain(err)
	}
	var sum TestSummary
	counted := make(chan *tester.Result)
	var all []*tester.Result
	go func() {
		defer close(counted)
		for r := range results {
			all = append(all, r)
		}
		// Results arrive in any order; report them by file and line, as a person reads them.
		sort.SliceStable(all, func(i, j int) bool {
			a, b := all[i].Location, all[j].Location
			if a == nil || b == nil {
				return b != nil
			}
			if a.File != b.File {
				return a.File < b.File
			}
			return a.Row < b.Row
		})
		for _, r := range all {
			switch {
			case r.Skip:
				sum.Skipped++
			case r.Error != nil:
				sum.Errors++
			case r.Fail:
				sum.Failed++
			default:
				sum.Passed++
			}
			counted <- r
		}
	}()
	if err := (tester.PrettyReporter{Output: w, Verbose: opts.Verbose, FailureLine: true}).Report(counted); err != nil {
		return sum, err
	}
	if sum.Passed+sum.Failed+sum.Errors+sum.Skipped == 0 {
		return sum, fmt.Errorf("no tests (rules named test_*) in %v", paths)
	}
	return sum, nil
}

// explain gives OPA's compile errors as "FILE:LINE: code: message", explaining a disabled builtin.
func explain(err error) error {
	list, ok := astErrors(err)
	if !ok {
		return err
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		prefix := ""
		if loc := e.Location; loc != nil {
			prefix = fmt.Sprintf("%s:%d: ", loc.File, loc.Row)
		}
		out = append(out, errors.New(prefix+describe(e)))
	}
	return errors.Join(out...)
}
